"""The local test Hub against the REAL huggingface_hub client: if these pass, the client behaves against
the local hub (gatedfetch.localhub) as it does against huggingface.co (same calls, same exceptions, same bytes).

Endpoints and tokens are passed explicitly (huggingface_hub reads its env at import time); the
fixture below still sets HF_HUB_DISABLE_XET, HF_HUB_DISABLE_TELEMETRY and HF_HOME, in the
environment and in the already-imported constants.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from gatedfetch.localhub import MODEL, TINY, TOKENS, FileSpec, default_world, gated_message
from tests.jobs_hub import TestHub

hf = pytest.importorskip("huggingface_hub")
from huggingface_hub import HfApi, RepoFile, constants, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf_home"
    home.mkdir()
    for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_EXPERIMENTAL_WARNING", True)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    return home


def api(hub: TestHub) -> HfApi:
    return HfApi(endpoint=hub.url)


def download(hub: TestHub, tmp_path: Path, filename: str, token: str | bool = TOKENS["accepted_read"],
             repo: str = MODEL, revision: str | None = None) -> Path:
    return Path(hf_hub_download(repo, filename, revision=revision, endpoint=hub.url, token=token,
                                cache_dir=tmp_path / "cache"))


def raw(hub_or_url: str, method: str, path: str, headers: dict[str, str] | None = None,
        body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(hub_or_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def cdn_path(hub: TestHub, filename: str, token: str = TOKENS["accepted_read"]) -> str:
    status, headers, _ = raw(hub.url, "HEAD", f"/{MODEL}/resolve/main/{filename}",
                             {"authorization": f"Bearer {token}"})
    assert status == 302
    location = urlsplit(headers["location"])
    return f"{location.path}?{location.query}"


# -- tokens and world -----------------------------------------------------------------------


def test_tokens_have_the_real_shape_and_are_distinct() -> None:
    needed = {"accepted_read", "accepted_write", "fine_grained_ok", "fine_grained_no_gated", "pending",
              "not_accepted", "rejected", "invalid"}
    assert needed <= set(TOKENS)
    for token in TOKENS.values():
        assert re.fullmatch(r"hf_[A-Za-z0-9]{34}", token) and "Canary" in token
    assert len(set(TOKENS.values())) == len(TOKENS)


def test_world_files_are_deterministic_and_hashed_right(tmp_path: Path) -> None:
    a = default_world(tmp_path / "a", big_size=2 * 1024 * 1024 + 5).repos[MODEL].files()
    b = default_world(tmp_path / "b", big_size=2 * 1024 * 1024 + 5).repos[MODEL].files()
    assert {p: f.sha256 for p, f in a.items()} == {p: f.sha256 for p, f in b.items()}
    assert set(a) == {".gitattributes", "README.md", "config.json", "special_tokens.json", "tokenizer.tiktoken",
                      "model.pth", "codec.pth"}
    for spec in a.values():
        data = spec.data_path.read_bytes()
        assert len(data) == spec.size
        assert hashlib.sha256(data).hexdigest() == spec.sha256
        assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == spec.blob_sha1
    assert a["model.pth"].size == 2 * 1024 * 1024 + 5 and a["model.pth"].lfs and a["codec.pth"].lfs
    assert not a["tokenizer.tiktoken"].lfs and not a[".gitattributes"].lfs
    model = a["model.pth"].data_path.read_bytes()
    assert model[: 1 << 20] != model[1 << 20 : 2 << 20]  # every MiB differs: a misplaced range shows
    again = default_world(tmp_path / "a", big_size=2 * 1024 * 1024 + 5).repos[MODEL].files()  # reuse, same hashes
    assert {p: f.sha256 for p, f in again.items()} == {p: f.sha256 for p, f in a.items()}


# -- whoami ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "user", "role", "can_read_gated"),
    [
        ("accepted_read", "alice", "read", None),
        ("accepted_write", "alice", "write", None),
        ("fine_grained_ok", "alice", "fineGrained", True),
        ("fine_grained_no_gated", "alice", "fineGrained", False),
        ("pending", "pat", "read", None),
        ("not_accepted", "nora", "read", None),
        ("rejected", "rex", "read", None),
    ],
)
def test_whoami(hub: TestHub, name: str, user: str, role: str, can_read_gated: bool | None) -> None:
    me = api(hub).whoami(token=TOKENS[name])
    assert me["name"] == user and me["type"] == "user" and isinstance(me["orgs"], list)
    token = me["auth"]["accessToken"]
    assert token["role"] == role and token["displayName"]
    if can_read_gated is None:
        assert "fineGrained" not in token
    else:
        assert token["fineGrained"]["canReadGatedRepos"] is can_read_gated
        assert isinstance(token["fineGrained"]["scoped"], list)
    assert hub.requests[-1].headers["authorization"] == f"Bearer {TOKENS[name]}"


def test_whoami_lists_orgs(hub: TestHub) -> None:
    assert [o["name"] for o in api(hub).whoami(token=TOKENS["accepted_read"])["orgs"]] == ["fishfans"]


def test_whoami_with_an_unknown_token_is_invalid_user_token(hub: TestHub) -> None:
    with pytest.raises(HfHubHTTPError) as e:
        api(hub).whoami(token=TOKENS["invalid"])
    assert e.value.response.status_code == 401
    assert "Invalid user token" in str(e.value)
    assert e.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    assert "X-Error-Code" not in e.value.response.headers


def test_whoami_without_a_token_is_401(hub: TestHub) -> None:
    status, headers, _ = raw(hub.url, "GET", "/api/whoami-v2")
    assert status == 401 and headers["x-error-message"] == "Invalid credentials in Authorization header"
    assert "x-error-code" not in headers


def test_whoami_can_be_missing_as_on_a_mirror(hub: TestHub) -> None:
    hub.settings.whoami = False
    with pytest.raises(HfHubHTTPError) as e:
        api(hub).whoami(token=TOKENS["accepted_read"])
    assert e.value.response.status_code == 404


# -- auth-check -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["accepted_read", "accepted_write", "fine_grained_ok"])
def test_auth_check_passes_with_access(hub: TestHub, name: str) -> None:
    api(hub).auth_check(MODEL, token=TOKENS[name])
    assert hub.requests[-1].path == f"/api/models/{MODEL}/auth-check" and hub.requests[-1].status == 200


@pytest.mark.parametrize(
    ("name", "state", "fine"),
    [("not_accepted", "none", False), ("pending", "pending", False), ("rejected", "rejected", False),
     ("fine_grained_no_gated", "accepted", True)],
)
def test_auth_check_refusals_carry_the_reason(hub: TestHub, name: str, state: str, fine: bool) -> None:
    with pytest.raises(GatedRepoError) as e:
        api(hub).auth_check(MODEL, token=TOKENS[name])
    assert e.value.response.status_code == 403
    message = e.value.response.headers["X-Error-Message"]
    assert message == gated_message(state, MODEL, fine)
    expected_fragment = {
        "none": "you are not in the authorized list. Visit https://huggingface.co/fishaudio/openaudio-s1-mini",
        "pending": "is awaiting a review from the repo authors",
        "rejected": "has been rejected by the repo's authors",
    }[state] if not fine else "Please enable access to public gated repositories in your fine-grained token"
    assert expected_fragment in message


def test_auth_check_without_a_token_is_gated_401(hub: TestHub) -> None:
    with pytest.raises(GatedRepoError) as e:
        api(hub).auth_check(MODEL, token=False)
    assert e.value.response.status_code == 401
    assert "authorization" not in hub.requests[-1].headers


def test_auth_check_unknown_repo_and_invalid_token(hub: TestHub) -> None:
    with pytest.raises(RepositoryNotFoundError) as e:
        api(hub).auth_check("fishaudio/no-such-model", token=TOKENS["accepted_read"])
    assert not isinstance(e.value, GatedRepoError) and e.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as e2:
        api(hub).auth_check(MODEL, token=TOKENS["invalid"])
    assert not isinstance(e2.value, RepositoryNotFoundError)
    assert e2.value.response.status_code == 401
    assert e2.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_auth_check_public_repo_needs_no_token(hub: TestHub) -> None:
    api(hub).auth_check(TINY, token=False)  # raises when access is refused
    api(hub).auth_check(TINY, token=TOKENS["fine_grained_no_gated"])
    checks = [r for r in hub.requests if r.server == "hub" and "auth-check" in r.path]
    assert [r.status for r in checks] == [200, 200]
    assert "authorization" not in checks[0].headers and "authorization" in checks[1].headers


def test_auth_check_write(hub: TestHub) -> None:
    with pytest.raises(HfHubHTTPError) as e:
        api(hub).auth_check(MODEL, token=TOKENS["accepted_write"], write=True)  # alice does not own fishaudio
    assert e.value.response.status_code == 403 and not isinstance(e.value, RepositoryNotFoundError)


def test_auth_check_mirror_modes(hub: TestHub) -> None:
    hub.settings.auth_check = "missing"
    with pytest.raises(HfHubHTTPError) as e:
        api(hub).auth_check(MODEL, token=TOKENS["accepted_read"])
    assert e.value.response.status_code == 404 and not isinstance(e.value, RepositoryNotFoundError)
    hub.settings.auth_check = "repo_not_found"
    with pytest.raises(RepositoryNotFoundError):
        api(hub).auth_check(MODEL, token=TOKENS["accepted_read"])
    assert api(hub).model_info(MODEL, token=TOKENS["accepted_read"]).sha == hub.repo(MODEL).commit("main")


def test_set_access_changes_the_answer(hub: TestHub) -> None:
    hub.set_access(TOKENS["not_accepted"], MODEL, "accepted")
    api(hub).auth_check(MODEL, token=TOKENS["not_accepted"])
    hub.set_access("alice", MODEL, "pending")
    with pytest.raises(GatedRepoError) as e:
        api(hub).auth_check(MODEL, token=TOKENS["accepted_write"])
    assert "awaiting a review" in e.value.response.headers["X-Error-Message"]
    with pytest.raises(GatedRepoError):  # every token of that user
        api(hub).auth_check(MODEL, token=TOKENS["fine_grained_ok"])


# -- model info, tree, paths-info -----------------------------------------------------------


def _check_siblings(siblings: list, files: dict[str, FileSpec]) -> None:
    assert {s.rfilename for s in siblings} == set(files)
    for s in siblings:
        spec = files[s.rfilename]
        assert s.size == spec.size
        if spec.lfs:
            assert s.lfs is not None and s.lfs.sha256 == spec.sha256 and s.lfs.size == spec.size
        else:
            assert s.lfs is None and s.blob_id == spec.blob_sha1


@pytest.mark.parametrize(
    "token", [TOKENS["not_accepted"], False, TOKENS["accepted_read"]], ids=["not_accepted", "anonymous", "accepted"]
)
def test_model_info_is_answered_even_without_access(hub: TestHub, token: str | bool) -> None:
    repo = hub.repo(MODEL)
    info = api(hub).model_info(MODEL, files_metadata=True, token=token)
    assert info.id == MODEL and info.sha == repo.commit("main") and info.gated == "manual" and info.private is False
    assert info.siblings is not None
    _check_siblings(info.siblings, repo.files("main"))
    assert "blobs=true" in hub.requests[-1].path


def test_model_info_without_blobs_has_names_only(hub: TestHub) -> None:
    info = api(hub).model_info(MODEL, token=TOKENS["accepted_read"])
    assert info.siblings and all(s.size is None and s.lfs is None for s in info.siblings)
    assert {s.rfilename for s in info.siblings} == set(hub.repo(MODEL).files())


def test_model_info_by_revision(hub: TestHub) -> None:
    repo = hub.repo(MODEL)
    old = api(hub).model_info(MODEL, revision="v1.0", files_metadata=True, token=TOKENS["accepted_read"])
    assert old.sha == repo.commit("v1.0") != repo.commit("main")
    assert old.siblings is not None
    _check_siblings(old.siblings, repo.files("v1.0"))
    assert repo.files("v1.0")["config.json"].sha256 != repo.files("main")["config.json"].sha256
    by_sha = api(hub).model_info(MODEL, revision=repo.commit("v1.0"), token=TOKENS["accepted_read"])
    assert by_sha.sha == repo.commit("v1.0")
    assert api(hub).model_info(TINY, token=False).gated is False


def test_model_info_errors(hub: TestHub) -> None:
    with pytest.raises(RevisionNotFoundError):
        api(hub).model_info(MODEL, revision="v9", token=TOKENS["accepted_read"])
    with pytest.raises(RevisionNotFoundError):
        api(hub).model_info(MODEL, revision="0" * 40, token=TOKENS["accepted_read"])
    with pytest.raises(RepositoryNotFoundError) as e:
        api(hub).model_info("fishaudio/nothing", token=TOKENS["accepted_read"])
    assert e.value.response.headers["X-Error-Code"] == "RepoNotFound"
    with pytest.raises(HfHubHTTPError) as e2:
        api(hub).model_info(MODEL, token=TOKENS["invalid"])
    assert e2.value.response.status_code == 401 and not isinstance(e2.value, RepositoryNotFoundError)


def test_list_repo_tree_matches_the_files(hub: TestHub) -> None:
    repo = hub.repo(MODEL)
    sha = repo.commit("main")
    listed = list(api(hub).list_repo_tree(MODEL, revision=sha, recursive=True, token=TOKENS["not_accepted"]))
    entries = [e for e in listed if isinstance(e, RepoFile)]
    assert len(entries) == len(listed)
    files = repo.files("main")
    assert sorted(e.path for e in entries) == sorted(files)
    for e in entries:
        spec = files[e.path]
        assert e.size == spec.size
        if spec.lfs:
            assert e.lfs is not None and e.lfs.sha256 == spec.sha256 and e.lfs.size == spec.size
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{spec.sha256}\nsize {spec.size}\n"
            assert e.lfs.pointer_size == len(pointer)
            assert e.blob_id == hashlib.sha1(f"blob {len(pointer)}\0{pointer}".encode()).hexdigest()
        else:
            assert e.lfs is None
            data = spec.data_path.read_bytes()
            assert e.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_list_repo_tree_pages_with_link_headers(hub: TestHub) -> None:
    hub.settings.tree_page_size = 2
    entries = list(api(hub).list_repo_tree(MODEL, revision="main", recursive=True, token=TOKENS["accepted_read"]))
    assert sorted(e.path for e in entries) == sorted(hub.repo(MODEL).files())
    pages = [r for r in hub.requests if "/tree/" in r.path]
    assert len(pages) == 4 and "cursor=" in pages[-1].path


def test_list_repo_tree_errors(hub: TestHub) -> None:
    with pytest.raises(RevisionNotFoundError):
        list(api(hub).list_repo_tree(MODEL, revision="nope", token=TOKENS["accepted_read"]))
    with pytest.raises(RemoteEntryNotFoundError):
        list(api(hub).list_repo_tree(MODEL, path_in_repo="no/such/dir", token=TOKENS["accepted_read"]))


def test_get_paths_info(hub: TestHub) -> None:
    files = hub.repo(MODEL).files("v1.0")
    infos = api(hub).get_paths_info(MODEL, ["config.json", "model.pth", "missing.bin"], revision="v1.0",
                                    token=TOKENS["accepted_read"])
    assert {i.path: getattr(i, "size", None) for i in infos} == {"config.json": files["config.json"].size,
                                               "model.pth": files["model.pth"].size}
    model = next(i for i in infos if i.path == "model.pth")
    assert isinstance(model, RepoFile) and model.lfs is not None and model.lfs.sha256 == files["model.pth"].sha256


# -- downloads ------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["config.json", "tokenizer.tiktoken", ".gitattributes", "model.pth", "codec.pth"])
def test_hf_hub_download_is_byte_identical(hub: TestHub, tmp_path: Path, filename: str) -> None:
    spec = hub.repo(MODEL).files()[filename]
    path = download(hub, tmp_path, filename)
    assert path.read_bytes() == spec.data_path.read_bytes()
    heads = [r for r in hub.requests if r.method == "HEAD"]
    assert heads and heads[0].server == "hub"
    assert heads[0].headers["authorization"] == f"Bearer {TOKENS['accepted_read']}"
    cdn = [r for r in hub.requests if r.server == "cdn"]
    if spec.lfs:
        assert heads[0].status == 302 and len(cdn) == 1 and spec.sha256 in cdn[0].path
        assert "authorization" not in cdn[0].headers  # the client drops the token on another origin
        assert not [r for r in hub.requests if r.server == "hub" and r.method == "GET"]
    else:
        assert heads[0].status == 200 and not cdn


def test_head_headers_are_what_the_client_needs(hub: TestHub) -> None:
    repo = hub.repo(MODEL)
    auth = {"authorization": f"Bearer {TOKENS['accepted_read']}"}
    status, h, body = raw(hub.url, "HEAD", f"/{MODEL}/resolve/main/config.json", auth)
    spec = repo.files()["config.json"]
    assert status == 200 and body == b""
    assert h["x-repo-commit"] == repo.commit("main") and h["etag"] == f'"{spec.blob_sha1}"'
    assert int(h["content-length"]) == spec.size and "x-linked-etag" not in h
    status, h, _ = raw(hub.url, "HEAD", f"/{MODEL}/resolve/v1.0/model.pth", auth)
    spec = repo.files("v1.0")["model.pth"]
    assert status == 302 and h["x-repo-commit"] == repo.commit("v1.0")
    assert h["x-linked-etag"] == f'"{spec.sha256}"' and int(h["x-linked-size"]) == spec.size
    assert h["location"].startswith(hub.cdn_url + "/")  # absolute, another origin


def test_lfs_served_by_the_hub_when_not_redirected(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.redirect_lfs = False
    spec = hub.repo(MODEL).files()["model.pth"]
    assert download(hub, tmp_path, "model.pth").read_bytes() == spec.data_path.read_bytes()
    assert not [r for r in hub.requests if r.server == "cdn"]
    gets = [r for r in hub.requests if r.method == "GET"]
    assert gets and gets[0].headers["authorization"] == f"Bearer {TOKENS['accepted_read']}"


@pytest.mark.parametrize(
    ("name", "state", "fine"),
    [("not_accepted", "none", False), ("pending", "pending", False), ("rejected", "rejected", False),
     ("fine_grained_no_gated", "accepted", True)],
)
def test_download_refused_with_gated_repo_error(hub: TestHub, tmp_path: Path, name: str, state: str,
                                                fine: bool) -> None:
    with pytest.raises(GatedRepoError) as e:
        download(hub, tmp_path, "model.pth", token=TOKENS[name])
    assert e.value.response.status_code == 403
    assert e.value.response.headers["X-Error-Message"] == gated_message(state, MODEL, fine)
    assert [r.method for r in hub.requests] == ["HEAD"]


def test_download_without_token_is_gated_401(hub: TestHub, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError) as e:
        download(hub, tmp_path, "config.json", token=False)
    assert e.value.response.status_code == 401


def test_download_errors(hub: TestHub, tmp_path: Path) -> None:
    with pytest.raises(RemoteEntryNotFoundError):
        download(hub, tmp_path, "nope.bin")
    with pytest.raises(RevisionNotFoundError):
        download(hub, tmp_path, "config.json", revision="v7")
    with pytest.raises(RepositoryNotFoundError):
        download(hub, tmp_path, "config.json", repo="fishaudio/other")
    with pytest.raises(HfHubHTTPError) as e:
        download(hub, tmp_path, "config.json", token=TOKENS["invalid"])
    assert e.value.response.status_code == 401 and not isinstance(e.value, RepositoryNotFoundError)


def test_public_repo_downloads_without_token(hub: TestHub, tmp_path: Path) -> None:
    files = hub.repo(TINY).files()
    for name in files:
        assert download(hub, tmp_path, name, token=False, repo=TINY).read_bytes() == files[name].data_path.read_bytes()
    assert any(r.server == "cdn" for r in hub.requests)


def test_mirror_gated_refusal(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.mirror_gated_refusal = True
    api(hub).auth_check(MODEL, token=TOKENS["accepted_read"])
    with pytest.raises(GatedRepoError) as e:
        download(hub, tmp_path, "config.json")
    assert e.value.response.status_code == 403


def test_snapshot_download_main_and_tag(hub: TestHub, tmp_path: Path) -> None:
    repo = hub.repo(MODEL)
    for rev in ("main", "v1.0"):
        out = tmp_path / rev
        snapshot_download(MODEL, revision=rev, local_dir=out, endpoint=hub.url, token=TOKENS["accepted_read"],
                          cache_dir=tmp_path / "cache")
        for name, spec in repo.files(rev).items():
            assert (out / name).read_bytes() == spec.data_path.read_bytes(), name
    assert (tmp_path / "main" / "config.json").read_bytes() != (tmp_path / "v1.0" / "config.json").read_bytes()


def test_snapshot_download_rerun_makes_only_the_revision_call(hub: TestHub, tmp_path: Path) -> None:
    def run() -> str:
        return snapshot_download(MODEL, endpoint=hub.url, token=TOKENS["accepted_read"], cache_dir=tmp_path / "cache")

    first = run()
    assert len([r for r in hub.requests if r.method == "HEAD"]) == len(hub.repo(MODEL).files())
    hub.clear_requests()
    assert run() == first
    assert [r.path for r in hub.requests] == [f"/api/models/{MODEL}/revision/main"]


def test_snapshot_download_gated_refusal(hub: TestHub, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError):
        snapshot_download(MODEL, endpoint=hub.url, token=TOKENS["pending"], local_dir=tmp_path / "out",
                          cache_dir=tmp_path / "cache")
    kinds = {(r.method, r.path.split("?")[0].split("/")[5] if r.path.startswith("/api/") else "resolve")
             for r in hub.requests}
    assert ("GET", "revision") in kinds and ("GET", "tree") in kinds and ("HEAD", "resolve") in kinds


# -- Range, faults, settings ----------------------------------------------------------------


@pytest.mark.parametrize("server", ["hub", "cdn"])
def test_range_requests(hub: TestHub, server: str) -> None:
    spec = hub.repo(MODEL).files()["model.pth"]
    data = spec.data_path.read_bytes()
    if server == "cdn":
        base, path, headers = hub.cdn_url, cdn_path(hub, "model.pth"), {}
    else:
        hub.settings.redirect_lfs = False
        base, path = hub.url, f"/{MODEL}/resolve/main/model.pth"
        headers = {"authorization": f"Bearer {TOKENS['accepted_read']}"}
    status, h, body = raw(base, "GET", path, {**headers, "range": "bytes=1000-"})
    assert status == 206 and body == data[1000:] and h["content-range"] == f"bytes 1000-{spec.size - 1}/{spec.size}"
    assert int(h["content-length"]) == spec.size - 1000
    status, h, body = raw(base, "GET", path, {**headers, "range": "bytes=10-19"})
    assert status == 206 and body == data[10:20] and h["content-range"] == f"bytes 10-19/{spec.size}"
    status, h, _ = raw(base, "GET", path, {**headers, "range": f"bytes={spec.size}-"})
    assert status == 416 and h["content-range"] == f"bytes */{spec.size}"
    status, _, body = raw(base, "GET", path, headers)
    assert status == 200 and body == data
    hub.settings.ignore_range = True
    status, h, body = raw(base, "GET", path, {**headers, "range": "bytes=1000-"})
    assert status == 200 and body == data and "content-range" not in h


def test_reset_fault_really_resets_the_connection(hub: TestHub) -> None:
    hub.add_fault("model.pth", reset_after=100_000, server="cdn")
    path = cdn_path(hub, "model.pth")
    with socket.create_connection(("127.0.0.1", int(urlsplit(hub.cdn_url).port or 0)), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        with pytest.raises(ConnectionResetError):
            while True:
                time.sleep(0.05)  # let the RST arrive before the data is drained
                chunk = s.recv(1 << 16)
                if not chunk:
                    break  # a clean close: the test fails on the pytest.raises
                got += chunk
    body = got.partition(b"\r\n\r\n")[2]
    assert len(body) <= 100_000


def test_client_gives_up_on_a_reset(hub: TestHub, tmp_path: Path) -> None:
    """huggingface_hub 2.4's http_get retries ConnectError, TimeoutException and RemoteProtocolError, not ReadError:
    a connection reset mid-body fails the download (no in-process resume)."""
    hub.add_fault("model.pth", reset_after=1_000_000, server="cdn", method="GET")
    with pytest.raises(httpx2.ReadError):
        download(hub, tmp_path, "model.pth")
    gets = [r for r in hub.requests if r.server == "cdn" and r.method == "GET"]
    assert len(gets) == 1 and gets[0].bytes_sent <= 1_000_000


def test_client_retries_after_an_early_clean_close(hub: TestHub, tmp_path: Path) -> None:
    """A clean early close is a RemoteProtocolError, which http_get retries; under 10 MiB (its chunk size) nothing
    was written yet, so the retry starts over without Range."""
    spec = hub.repo(MODEL).files()["model.pth"]
    hub.add_fault("model.pth", close_after=1_000_000, server="cdn", method="GET")
    assert download(hub, tmp_path, "model.pth").read_bytes() == spec.data_path.read_bytes()
    gets = [r for r in hub.requests if r.server == "cdn" and r.method == "GET"]
    assert len(gets) == 2 and gets[0].bytes_sent == 1_000_000 and gets[1].status == 200
    assert "range" not in gets[1].headers


def test_client_resumes_with_range_after_whole_chunks(tmp_path: Path) -> None:
    mib = 1024 * 1024
    with TestHub(default_world(tmp_path / "data", big_size=24 * mib)) as hub:
        spec = hub.repo(MODEL).files()["model.pth"]
        hub.add_fault("model.pth", close_after=15 * mib, server="cdn", method="GET")
        assert download(hub, tmp_path, "model.pth").read_bytes() == spec.data_path.read_bytes()
        gets = [r for r in hub.requests if r.server == "cdn" and r.method == "GET"]
    assert len(gets) == 2 and "range" not in gets[0].headers
    assert gets[1].headers["range"] == f"bytes={10 * mib}-" and gets[1].status == 206
    assert gets[1].bytes_sent == 14 * mib


def test_flip_fault_corrupts_silently(hub: TestHub, tmp_path: Path) -> None:
    spec = hub.repo(MODEL).files()["model.pth"]
    hub.add_fault("model.pth", flip_at=12345, server="cdn", times=None)
    got = download(hub, tmp_path, "model.pth").read_bytes()  # the client has no checksum: it accepts it
    want = spec.data_path.read_bytes()
    assert len(got) == len(want) and got != want
    assert [i for i in range(len(want)) if got[i] != want[i]] == [12345] and got[12345] == want[12345] ^ 0xFF


def test_status_faults(hub: TestHub, tmp_path: Path) -> None:
    hub.add_fault("model.pth", status=429, retry_after=1, server="cdn", method="GET")
    spec = hub.repo(MODEL).files()["model.pth"]
    assert download(hub, tmp_path, "model.pth").read_bytes() == spec.data_path.read_bytes()  # client retried
    assert [r.status for r in hub.requests if r.server == "cdn"] == [429, 200]
    hub.add_fault("codec.pth", status=503, times=None, server="cdn")
    with pytest.raises(HfHubHTTPError) as e:
        download(hub, tmp_path, "codec.pth")
    assert e.value.response.status_code == 503
    hub.clear_faults()
    hub.add_fault("/api/whoami-v2", status=500, times=2)
    with pytest.raises(HfHubHTTPError):
        api(hub).whoami(token=TOKENS["accepted_read"])
    with pytest.raises(HfHubHTTPError):
        api(hub).whoami(token=TOKENS["accepted_read"])
    assert api(hub).whoami(token=TOKENS["accepted_read"])["name"] == "alice"  # used up


def test_no_content_length(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.no_content_length = True
    path = cdn_path(hub, "codec.pth")
    spec = hub.repo(MODEL).files()["codec.pth"]
    status, h, body = raw(hub.cdn_url, "GET", path)
    assert status == 200 and "content-length" not in h and body == spec.data_path.read_bytes()
    assert download(hub, tmp_path, "codec.pth").read_bytes() == spec.data_path.read_bytes()


def test_throttle(hub: TestHub) -> None:
    hub.settings.throttle_bps = 2_000_000
    path = cdn_path(hub, "codec.pth")  # ~1 MiB: about half a second
    t0 = time.monotonic()
    status, _, body = raw(hub.cdn_url, "GET", path)
    assert status == 200 and len(body) == hub.repo(MODEL).files()["codec.pth"].size
    assert time.monotonic() - t0 > 0.4


def test_keep_alive_and_stop_closes_connections(hub_data: Path) -> None:
    hub = TestHub(default_world(hub_data, big_size=3 * 1024 * 1024)).start()
    parts = urlsplit(hub.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 0, timeout=5)
    socks = []
    for _ in range(3):
        conn.request("GET", f"/{MODEL}/resolve/main/config.json",
                     headers={"authorization": f"Bearer {TOKENS['accepted_read']}"})
        r = conn.getresponse()
        assert r.status == 200 and r.read()
        socks.append(conn.sock)
    assert socks[0] is not None and socks == [socks[0]] * 3  # one connection for all three
    hub.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn.request("GET", "/api/whoami-v2")
        conn.getresponse()
    conn.close()


def test_unknown_routes_are_plain_404(hub: TestHub) -> None:
    for path in ("/api/nothing", "/nothing", "/api/agent-harnesses/x"):
        status, h, _ = raw(hub.url, "GET", path)
        assert status == 404 and "x-error-code" not in h, path
    status, _, _ = raw(hub.cdn_url, "GET", "/repos/aa/bb/" + "0" * 64)
    assert status == 404


def test_requests_are_recorded(hub: TestHub) -> None:
    api(hub).whoami(token=TOKENS["accepted_read"])
    r = hub.requests[-1]
    assert (r.server, r.method, r.path, r.status) == ("hub", "GET", "/api/whoami-v2", 200)
    assert "hf_hub/" in r.headers["user-agent"]
    hub.clear_requests()
    assert hub.requests == []


# -- control routes and CLI -----------------------------------------------------------------


def _post(url: str, body: object) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def test_control_routes(hub: TestHub) -> None:
    assert _post(f"{hub.url}/_test/settings", {"whoami": False, "tree_page_size": 3})[0] == 200
    assert hub.settings.whoami is False and hub.settings.tree_page_size == 3
    assert _post(f"{hub.url}/_test/settings", {"no_such_setting": 1})[0] == 400
    assert _post(f"{hub.url}/_test/faults", {"match": "/api/models/", "status": 502})[0] == 200
    with pytest.raises(HfHubHTTPError) as e:
        api(hub).auth_check(MODEL, token=TOKENS["accepted_read"])
    assert e.value.response.status_code == 502
    _post(f"{hub.url}/_test/faults", {"match": "/api/models/", "status": 502, "times": None})
    assert _post(f"{hub.url}/_test/clear", {})[0] == 200
    assert hub.settings.whoami is True and hub.settings.tree_page_size is None
    api(hub).auth_check(MODEL, token=TOKENS["accepted_read"])
    assert raw(hub.url, "GET", "/_test/settings")[0] == 404
    assert _post(f"{hub.cdn_url}/_test/clear", {})[0] == 404
    assert not [r for r in hub.requests if r.server == "hub" and r.path.startswith("/_test/")]  # not traffic


def test_default_hub_without_a_world(tmp_path: Path) -> None:
    with TestHub() as hub:
        assert hub.url != hub.cdn_url
        assert download(hub, tmp_path, "config.json", repo=TINY, token=False).read_bytes() == b'{"tiny": true}\n'
        data_dir = hub.repo(MODEL).files()["model.pth"].data_path.parent
        assert hub.repo(MODEL).files()["model.pth"].size == 3 * 1024 * 1024
    assert data_dir.is_dir()


def test_cli_prints_one_json_line_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatedfetch.localhub", "--big-size", "100000", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["model"] == MODEL and info["tokens"] == TOKENS
        assert info["url"].startswith("http://127.0.0.1:") and info["cdn_url"].startswith("http://127.0.0.1:")
        assert HfApi(endpoint=info["url"]).whoami(token=TOKENS["accepted_read"])["name"] == "alice"
        path = Path(hf_hub_download(MODEL, "model.pth", endpoint=info["url"], token=TOKENS["accepted_read"],
                                    cache_dir=tmp_path / "cache"))
        assert path.stat().st_size == 100000
        _post(f"{info['url']}/_test/settings", {"whoami": False})
        with pytest.raises(HfHubHTTPError):
            HfApi(endpoint=info["url"]).whoami(token=TOKENS["accepted_read"])
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out == b"" and b"Traceback" not in err, err


# -- Jobs -----------------------------------------------------------------------------------


def test_run_job_is_recorded_and_answered(hub: TestHub) -> None:
    token = TOKENS["accepted_write"]
    job = api(hub).run_job(image="python:3.12", command=["python", "-c", "print(1)"],
                           secrets={"HF_TOKEN": token}, env={"MODEL": MODEL}, flavor="cpu-basic",
                           timeout=600, token=token)
    assert job.id and job.owner.name == "alice" and job.url == f"{hub.url}/jobs/alice/{job.id}"
    assert job.status.stage == "RUNNING" and job.docker_image == "python:3.12"
    assert token not in json.dumps(job.secrets)  # secret values are never echoed
    assert len(hub.jobs) == 1
    rec = hub.jobs[0]
    assert rec["authorization"] == f"Bearer {token}" and rec["namespace"] == "alice"
    body = rec["body"]
    assert body["dockerImage"] == "python:3.12" and body["command"] == ["python", "-c", "print(1)"]
    assert body["secrets"] == {"HF_TOKEN": token} and body["environment"] == {"MODEL": MODEL}
    assert body["flavor"] == "cpu-basic" and body["timeoutSeconds"] == 600
    post = next(r for r in hub.requests if r.method == "POST")
    assert post.path == "/api/jobs/alice"
    assert list(api(hub).fetch_job_logs(job_id=job.id, token=token)) == ["hello from the test hub"]
    assert api(hub).inspect_job(job_id=job.id, token=token).status.stage == "COMPLETED"


def test_run_uv_job_with_a_url_script(hub: TestHub) -> None:
    token = TOKENS["accepted_write"]
    api(hub).run_uv_job("https://example.com/fetch.py", script_args=["--model", MODEL], dependencies=["numpy"],
                        secrets={"HF_TOKEN": token}, token=token)
    body = hub.jobs[-1]["body"]
    assert body["command"] == ["uv", "run", "--with", "numpy", "https://example.com/fetch.py", "--model", MODEL]
    assert body["secrets"] == {"HF_TOKEN": token} and "uv" in body["dockerImage"]


def test_run_job_needs_a_valid_token(hub: TestHub) -> None:
    with pytest.raises(HfHubHTTPError) as e:
        api(hub).run_job(image="python:3.12", command=["true"], namespace="alice", token=TOKENS["invalid"])
    assert e.value.response.status_code == 401 and hub.jobs == []
