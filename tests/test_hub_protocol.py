"""The test Hub answers the real huggingface_hub client as huggingface.co does (HUB_PROTOCOL.md),
so tests against it say something about the real Hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.conftest import MODEL
from tests.hub import TestHub


def api(hub: TestHub) -> HfApi:
    return HfApi(endpoint=hub.url)


def test_whoami_gives_name_role_and_fine_grained_permission(hub: TestHub, tokens: dict[str, str]) -> None:
    me = api(hub).whoami(token=tokens["fine_grained_no_gated"])
    assert me["name"] == "alice"
    access = me["auth"]["accessToken"]
    assert access["role"] == "fineGrained" and access["fineGrained"]["canReadGatedRepos"] is False
    assert api(hub).whoami(token=tokens["accepted_write"])["auth"]["accessToken"]["role"] == "write"


def test_invalid_token_is_a_401_the_client_calls_invalid(hub: TestHub, tokens: dict[str, str]) -> None:
    with pytest.raises(HfHubHTTPError) as exc:
        api(hub).whoami(token=tokens["invalid"])
    assert exc.value.response.status_code == 401 and "Invalid user token" in str(exc.value)


@pytest.mark.parametrize(
    ("name", "words"),
    [("not_accepted", "not in the authorized list"), ("pending", "awaiting a review"),
     ("rejected", "rejected"), ("fine_grained_no_gated", "fine-grained token")],
)
def test_auth_check_raises_gated_with_the_reason(hub: TestHub, tokens: dict[str, str], name: str, words: str) -> None:
    with pytest.raises(GatedRepoError) as exc:
        api(hub).auth_check(MODEL, token=tokens[name])
    assert exc.value.response.status_code == 403
    assert words in exc.value.response.headers["x-error-message"]


def test_auth_check_passes_for_an_accepted_user(hub: TestHub, tokens: dict[str, str]) -> None:
    api(hub).auth_check(MODEL, token=tokens["accepted_read"])


def test_gated_repo_answers_info_but_refuses_files(hub: TestHub, tokens: dict[str, str], tmp_path: Path) -> None:
    info = api(hub).model_info(MODEL, files_metadata=True, token=tokens["not_accepted"])
    assert info.gated == "manual" and info.sha == hub.repo(MODEL).commit("main")
    assert {s.rfilename for s in info.siblings or []} == set(hub.repo(MODEL).files())
    with pytest.raises(GatedRepoError):
        hf_hub_download(MODEL, "config.json", endpoint=hub.url, token=tokens["not_accepted"], cache_dir=tmp_path)


def test_missing_repo_revision_and_file(hub: TestHub, tokens: dict[str, str], tmp_path: Path) -> None:
    t = tokens["accepted_read"]
    with pytest.raises(RepositoryNotFoundError):
        api(hub).model_info("nobody/nothing", token=t)
    with pytest.raises(RevisionNotFoundError):
        api(hub).model_info(MODEL, revision="v9", token=t)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(MODEL, "nope.bin", endpoint=hub.url, token=t, cache_dir=tmp_path)


def test_snapshot_download_is_byte_identical_and_cdn_gets_no_token(
    hub: TestHub, tokens: dict[str, str], tmp_path: Path
) -> None:
    out = Path(snapshot_download(MODEL, endpoint=hub.url, token=tokens["accepted_read"], local_dir=tmp_path / "o"))
    for path, spec in hub.repo(MODEL).files().items():
        assert (out / path).read_bytes() == spec.data_path.read_bytes()
    cdn = [q for q in hub.requests if q.server == "cdn"]
    assert cdn and all("authorization" not in q.headers for q in cdn)


def test_tree_lists_lfs_hashes(hub: TestHub, tokens: dict[str, str]) -> None:
    files = [f for f in api(hub).list_repo_tree(MODEL, recursive=True, token=tokens["accepted_read"])]
    by_path = {f.path: f for f in files}
    spec = hub.repo(MODEL).files()["model.pth"]
    lfs = getattr(by_path["model.pth"], "lfs", None)
    assert lfs is not None and lfs.sha256 == spec.sha256


def test_range_request_gives_206(hub: TestHub) -> None:
    import http.client
    from urllib.parse import urlsplit

    spec = hub.repo(MODEL).files()["model.pth"]
    u = urlsplit(hub.cdn_url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port)
    conn.request("GET", f"/repos/{MODEL}/{spec.sha256}", headers={"Range": "bytes=100-"})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 206 and r.getheader("content-range") == f"bytes 100-{spec.size - 1}/{spec.size}"
    assert body == spec.data_path.read_bytes()[100:]
