"""gatedfetch.transfer against the local hub (gatedfetch.localhub): its /resolve (the "origin") 302-redirects LFS
files to its CDN on another port, both with Range and switchable faults (a redirect chain, a shifted range...)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gatedfetch import failures, settings, store, transfer
from gatedfetch.localhub import MODEL, TOKENS, Fault, Req
from gatedfetch.progress import make_progress
from gatedfetch.store import record
from gatedfetch.transfer import FileResult, HttpRefused, RemoteFile, fetch_all
from gatedfetch.transfer import fetch as fetch_mod
from gatedfetch.transfer import retry as retry_mod
from tests.jobs_hub import TestHub

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = TOKENS["accepted_read"]
HEADERS = {"authorization": f"Bearer {TOKEN}", "user-agent": "gatedfetch-test; hf_hub/2.4.0"}
BIG = 3 * 1024 * 1024  # model.pth on the local hub (tests/conftest.py `hub`)
NAMES = ("model.pth", "config.json", "tokenizer.tiktoken")


def data(hub: TestHub, name: str) -> bytes:
    return hub.repo(MODEL).files()[name].data_path.read_bytes()


def gets(hub: TestHub, server: str, name: str = "model.pth") -> list[Req]:
    """The requests for `name` on `server`: "origin" (the hub's /resolve, HEAD and GET) or "cdn" (GETs; its paths
    carry the sha256)."""
    spec = hub.repo(MODEL).files()[name]
    if server == "origin":
        return [r for r in hub.requests if r.server == "hub" and urlsplit(r.path).path.endswith("/" + name)]
    return [r for r in hub.requests
            if r.server == "cdn" and r.method == "GET" and urlsplit(r.path).path.endswith("/" + (spec.sha256 or "-"))]


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Small buffers (so a reset or a kill lands mid-file) and recorded, near-instant backoff (the delays asked
    are the product's own)."""
    sleeps: list[float] = []
    settings.use(settings.Settings())

    def record(seconds: float, cancel: threading.Event | None) -> None:
        sleeps.append(seconds)
        time.sleep(min(seconds, 0.01))

    monkeypatch.setattr(fetch_mod, "BUFFER_SIZE", 64 * 1024)
    monkeypatch.setattr(retry_mod, "_sleep", record)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    return sleeps


def remote(hub: TestHub, name: str = "model.pth", *, lfs: bool = True, **over: Any) -> RemoteFile:
    body = data(hub, name)
    blob = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
    fields: dict[str, Any] = dict(
        path=name,
        size=len(body),
        url=f"{hub.url}/{MODEL}/resolve/{hub.repo(MODEL).commit('main')}/{name}",
        sha256=hashlib.sha256(body).hexdigest() if lfs else None,
        blob_sha1=None if lfs else blob,
    )
    fields.update(over)
    return RemoteFile(**fields)


def fetch(hub: TestHub, tmp_path: Path, rf: RemoteFile | None = None, **kw: Any) -> FileResult:
    rf = rf or remote(hub)
    kw.setdefault("progress", make_progress("quiet"))
    return fetch_all([rf], tmp_path / "out", tmp_path / "out" / ".gatedfetch", HEADERS, endpoint=hub.url, **kw)[0]


def child_env() -> dict[str, str]:
    """A fetch in another process: the headers (with the token) through its environment, never its argv."""
    return dict(os.environ, TRANSFER_HEADERS=json.dumps(HEADERS))


def partial_path(tmp_path: Path, rf: RemoteFile) -> Path:
    return store.partial_path(tmp_path / "out" / ".gatedfetch", transfer.content_key(rf))


def seed_partial(tmp_path: Path, rf: RemoteFile, data: bytes) -> Path:
    p = partial_path(tmp_path, rf)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def partials(tmp_path: Path) -> list[Path]:
    d = tmp_path / "out" / ".gatedfetch" / "partial"
    return list(d.iterdir()) if d.exists() else []


# --- verification -------------------------------------------------------------------------------


def test_lfs_file_arrives_verified_by_sha256(hub: TestHub, tmp_path: Path) -> None:
    r = fetch(hub, tmp_path)
    assert (tmp_path / "out" / "model.pth").read_bytes() == data(hub, "model.pth")
    assert r.verified and r.sha256 == hashlib.sha256(data(hub, "model.pth")).hexdigest()
    assert (r.fetched_bytes, r.resumed_from, r.size) == (BIG, 0, BIG)
    assert partials(tmp_path) == []


def test_regular_file_arrives_verified_by_git_blob_sha1(hub: TestHub, tmp_path: Path) -> None:
    r = fetch(hub, tmp_path, remote(hub, "config.json", lfs=False))
    assert r.verified and r.sha256 == hashlib.sha256(data(hub, "config.json")).hexdigest()
    assert (tmp_path / "out" / "config.json").read_bytes() == data(hub, "config.json")


def test_wrong_git_blob_sha1_is_rejected(hub: TestHub, tmp_path: Path) -> None:
    with pytest.raises(failures.IntegrityFailure, match="git blob sha1 mismatch"):
        fetch(hub, tmp_path, remote(hub, "config.json", lfs=False, blob_sha1="0" * 40))
    assert not (tmp_path / "out" / "config.json").exists()


def test_file_without_any_hash_is_fetched_but_not_verified(hub: TestHub, tmp_path: Path) -> None:
    r = fetch(hub, tmp_path, remote(hub, "config.json", sha256=None, blob_sha1=None))
    assert not r.verified and r.sha256 == hashlib.sha256(data(hub, "config.json")).hexdigest()


def test_flipped_byte_is_rejected_and_nothing_is_kept(hub: TestHub, tmp_path: Path) -> None:
    hub.faults.add(Fault("model.pth", server="cdn", flip_at=BIG // 2))
    with pytest.raises(failures.IntegrityFailure, match="sha256 mismatch") as info:
        fetch(hub, tmp_path)
    assert info.value.details["expected"] == hashlib.sha256(data(hub, "model.pth")).hexdigest()
    assert not (tmp_path / "out" / "model.pth").exists()
    assert partials(tmp_path) == []


def test_server_sending_more_than_expected_is_a_size_mismatch(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.no_content_length = True
    with pytest.raises(failures.IntegrityFailure, match="size mismatch"):
        fetch(hub, tmp_path, remote(hub, size=BIG - 10))
    assert not (tmp_path / "out" / "model.pth").exists()
    assert partials(tmp_path) == []


def test_announced_wrong_size_is_a_size_mismatch(hub: TestHub, tmp_path: Path) -> None:
    with pytest.raises(failures.IntegrityFailure, match=f"expected {BIG + 1} bytes, got {BIG}"):
        fetch(hub, tmp_path, remote(hub, size=BIG + 1))


# --- resume -----------------------------------------------------------------------------------


def test_resume_after_crash_fetches_only_the_rest(hub: TestHub, tmp_path: Path) -> None:
    rf = remote(hub)
    half = BIG // 2
    seed_partial(tmp_path, rf, data(hub, "model.pth")[:half])
    r = fetch(hub, tmp_path, rf)
    assert r.verified and (r.resumed_from, r.fetched_bytes) == (half, BIG - half)
    assert [q.headers.get("range") for q in gets(hub, "cdn")] == [f"bytes={half}-"]
    assert (tmp_path / "out" / "model.pth").read_bytes() == data(hub, "model.pth")
    assert partials(tmp_path) == []


@pytest.mark.e2e  # another process, killed
def test_sigkill_mid_file_then_the_next_run_resumes(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.throttle_bps = 4 * 1024 * 1024
    rf = remote(hub)
    code = (
        "import json, os, sys, pathlib\n"
        "from gatedfetch import transfer; from gatedfetch.progress import make_progress\n"
        "transfer.fetch.BUFFER_SIZE = 64 * 1024\n"
        "headers = json.loads(os.environ['TRANSFER_HEADERS'])\n"
        "rf = transfer.RemoteFile(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], None)\n"
        "out = pathlib.Path(sys.argv[5])\n"
        "transfer.fetch_all([rf], out, out / '.gatedfetch', headers, progress=make_progress('quiet'),"
        " endpoint='x')\n"
    )
    args = [rf.path, str(rf.size), rf.url, rf.sha256 or "", str(tmp_path / "out")]
    child = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=child_env())
    part = partial_path(tmp_path, rf)
    deadline = time.monotonic() + 10
    while (not part.exists() or part.stat().st_size < 512 * 1024) and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # What a re-run may keep is what the piece record vouches for: a kill can land between a write and its
    # record, and then the file holds more than the record says.
    kept = store.bytes_on_disk(tmp_path / "out" / ".gatedfetch", transfer.content_key(rf), BIG)
    assert 0 < kept <= part.stat().st_size < BIG and not (tmp_path / "out" / "model.pth").exists()
    hub.settings.throttle_bps = 0
    r = fetch(hub, tmp_path, rf)
    assert r.verified and (r.resumed_from, r.fetched_bytes) == (kept, BIG - kept)
    assert gets(hub, "cdn")[-1].headers.get("range") == f"bytes={kept}-"


def test_range_ignored_by_server_starts_over_from_zero(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.ignore_range = True
    rf = remote(hub)
    seed_partial(tmp_path, rf, data(hub, "model.pth")[: BIG // 2])
    r = fetch(hub, tmp_path, rf)
    assert r.verified and (r.resumed_from, r.fetched_bytes) == (0, BIG)
    assert (tmp_path / "out" / "model.pth").read_bytes() == data(hub, "model.pth")


def test_content_range_elsewhere_than_asked_starts_over(hub: TestHub, tmp_path: Path) -> None:
    hub.faults.add(Fault("model.pth", server="cdn", shift_range=100))
    rf = remote(hub)
    seed_partial(tmp_path, rf, data(hub, "model.pth")[:1000])
    r = fetch(hub, tmp_path, rf)
    assert r.verified and r.resumed_from == 0
    assert [q.headers.get("range") for q in gets(hub, "cdn")] == ["bytes=1000-", None]


def test_416_starts_over_once(hub: TestHub, tmp_path: Path) -> None:
    hub.faults.add(Fault("model.pth", server="cdn", status=416))
    rf = remote(hub)
    seed_partial(tmp_path, rf, data(hub, "model.pth")[:1000])
    r = fetch(hub, tmp_path, rf)
    assert r.verified and (r.resumed_from, r.fetched_bytes) == (0, BIG)


def test_partial_larger_than_the_file_is_discarded(hub: TestHub, tmp_path: Path) -> None:
    rf = remote(hub)
    seed_partial(tmp_path, rf, data(hub, "model.pth") + b"junk")
    r = fetch(hub, tmp_path, rf)
    assert r.verified and (r.resumed_from, r.fetched_bytes) == (0, BIG)


def test_corrupt_partial_from_an_earlier_run_is_fetched_anew_once(hub: TestHub, tmp_path: Path) -> None:
    rf = remote(hub)
    seed_partial(tmp_path, rf, b"\0" * 1000)
    r = fetch(hub, tmp_path, rf)
    assert r.verified and r.fetched_bytes == (BIG - 1000) + BIG
    assert (tmp_path / "out" / "model.pth").read_bytes() == data(hub, "model.pth")


def test_body_without_content_length_is_read_to_the_end(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.no_content_length = True
    r = fetch(hub, tmp_path)
    assert r.verified and r.fetched_bytes == BIG


# --- retries --------------------------------------------------------------------------------


def test_503_twice_then_success(hub: TestHub, tmp_path: Path, fast: list[float]) -> None:
    hub.faults.add(Fault("model.pth", status=503, times=2))
    r = fetch(hub, tmp_path)
    assert r.verified and len(gets(hub, "origin")) == 3
    assert fast == [0.5, 1.0]  # settings.Settings().backoff_base, then twice that


def test_429_retry_after_is_honoured(hub: TestHub, tmp_path: Path, fast: list[float]) -> None:
    hub.faults.add(Fault("model.pth", status=429, retry_after=3))
    r = fetch(hub, tmp_path)
    assert r.verified and fast == [3.0]


def test_body_cut_short_is_resumed_within_the_run(hub: TestHub, tmp_path: Path) -> None:
    hub.faults.add(Fault("model.pth", server="cdn", close_after=1024 * 1024))
    r = fetch(hub, tmp_path)
    assert r.verified and r.fetched_bytes == BIG and r.resumed_from == 0
    assert [q.headers.get("range") for q in gets(hub, "cdn")] == [None, "bytes=1048576-"]


def test_connection_reset_mid_body_is_retried(hub: TestHub, tmp_path: Path) -> None:
    hub.faults.add(Fault("model.pth", server="cdn", reset_after=1024 * 1024))
    r = fetch(hub, tmp_path)
    assert r.verified and r.fetched_bytes == BIG and len(gets(hub, "cdn")) == 2


def test_retries_exhausted_is_hub_unreachable(hub: TestHub, tmp_path: Path) -> None:
    hub.faults.add(Fault("model.pth", status=503, times=99))
    with pytest.raises(failures.HubUnreachable) as info:
        fetch(hub, tmp_path, retries=4)
    port = urlsplit(hub.url).port
    assert f"503 Service Unavailable from 127.0.0.1:{port} after 4 attempts" in info.value.message
    assert len(gets(hub, "origin")) == 4
    assert TOKEN not in info.value.message + info.value.fix + repr(info.value.details)


def test_unreachable_host_is_hub_unreachable(hub: TestHub, tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(failures.HubUnreachable, match="after 2 attempts"):
        fetch(hub, tmp_path, remote(hub, url=f"http://127.0.0.1:{port}/r/resolve/main/model.pth"), retries=2)


@pytest.mark.parametrize(("status", "code"), [(404, "EntryNotFound"), (403, "GatedRepo"), (401, "RepoNotFound")])
def test_client_errors_are_refused_without_retry(hub: TestHub, tmp_path: Path, status: int, code: str) -> None:
    hub.faults.add(Fault("model.pth", status=status, error_code=code))
    with pytest.raises(HttpRefused) as info:
        fetch(hub, tmp_path)
    assert info.value.status == status and info.value.headers["X-Error-Code"] == code
    assert len(gets(hub, "origin")) == 1 and TOKEN not in str(info.value)


# --- redirects and the token --------------------------------------------------------------------


def test_token_goes_to_the_hub_but_never_to_the_cdn(hub: TestHub, tmp_path: Path) -> None:
    fetch(hub, tmp_path)
    (origin,), (cdn,) = gets(hub, "origin"), gets(hub, "cdn")
    assert origin.headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in cdn.headers
    assert cdn.headers["user-agent"] == HEADERS["user-agent"]


def test_relative_redirect_on_the_same_origin_keeps_the_token(hub: TestHub, tmp_path: Path) -> None:
    hub.faults.add(Fault("model.pth", server="hub", hop=True, times=2))  # /resolve -> /resolve -> /resolve -> CDN
    r = fetch(hub, tmp_path)
    assert r.verified
    chain = gets(hub, "origin")
    assert len(chain) == 3 and all(q.headers["authorization"] == f"Bearer {TOKEN}" for q in chain)
    assert "authorization" not in gets(hub, "cdn")[0].headers


def test_proxy_from_the_environment_is_used(hub: TestHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    # The origin doubles as a forward proxy: through a proxy the request line holds the whole URL.
    monkeypatch.setenv("HTTP_PROXY", hub.url)
    monkeypatch.setenv("NO_PROXY", "example.invalid")
    monkeypatch.setenv("no_proxy", "example.invalid")
    hub.settings.redirect_lfs = False
    huggingface_hub.close_session()  # the session reads proxy variables when it is created
    try:
        r = fetch(hub, tmp_path)
    finally:
        huggingface_hub.close_session()
    assert r.verified
    assert [(q.method, q.path.startswith("http://")) for q in gets(hub, "origin")] == [("HEAD", True), ("GET", True)]


# --- concurrency -------------------------------------------------------------------------------


def test_two_threads_on_one_file_make_one_transfer(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.throttle_bps = 12 * 1024 * 1024
    results: list[FileResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(fetch(hub, tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.fetched_bytes for r in results) == [0, BIG] and all(r.verified for r in results)
    assert len(gets(hub, "cdn")) == 1
    assert (tmp_path / "out" / "model.pth").read_bytes() == data(hub, "model.pth")


@pytest.mark.e2e  # two other processes
def test_two_processes_on_one_folder_make_one_transfer(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.throttle_bps = 12 * 1024 * 1024
    rf = remote(hub)
    code = (
        "import json, os, sys, pathlib\n"
        "from gatedfetch import transfer; from gatedfetch.progress import make_progress\n"
        "headers = json.loads(os.environ['TRANSFER_HEADERS'])\n"
        "rf = transfer.RemoteFile(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], None)\n"
        "out = pathlib.Path(sys.argv[5])\n"
        "r, = transfer.fetch_all([rf], out, out / '.gatedfetch', headers, progress=make_progress('quiet'),"
        " endpoint='x')\n"
        "print(json.dumps([r.fetched_bytes, r.verified]))\n"
    )
    args = [rf.path, str(rf.size), rf.url, rf.sha256 or "", str(tmp_path / "out")]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, env=child_env())
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=30)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(outs) == [[0, True], [BIG, True]]
    assert len(gets(hub, "cdn")) == 1
    assert (tmp_path / "out" / "model.pth").read_bytes() == data(hub, "model.pth")


# --- fetch_all ----------------------------------------------------------------------------------


def test_fetch_all_returns_results_in_input_order(hub: TestHub, tmp_path: Path) -> None:
    files = [remote(hub, "config.json", lfs=False), remote(hub, "model.pth"), remote(hub, "tokenizer.tiktoken")]
    out = tmp_path / "out"
    rs = fetch_all(files, out, out / ".gatedfetch", HEADERS, progress=make_progress("quiet"), endpoint=hub.url)
    assert [r.path for r in rs] == ["config.json", "model.pth", "tokenizer.tiktoken"]
    assert all(r.verified for r in rs)
    assert all((out / name).read_bytes() == data(hub, name) for name in NAMES)


def test_fetch_all_stops_at_the_first_failure(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.throttle_bps = 2 * 1024 * 1024  # model.pth would take ~1.5 s
    files = [remote(hub, "model.pth"), remote(hub, "config.json", lfs=False, blob_sha1="0" * 40)]
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(failures.IntegrityFailure, match="config.json"):
        fetch_all(files, out, out / ".gatedfetch", HEADERS, progress=make_progress("quiet"), endpoint=hub.url)
    assert time.monotonic() - started < 1.2  # model.pth was stopped, not waited for
    assert not (out / "model.pth").exists()


def test_fetch_all_refuses_a_path_outside_the_folder(hub: TestHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(failures.Failure, match="unsafe file path"):
        fetch_all([remote(hub, path="../escape")], out, out / ".gatedfetch", HEADERS,
                  progress=make_progress("quiet"), endpoint=hub.url)


# --- disk ---------------------------------------------------------------------------------------


def test_disk_full_keeps_the_partial_for_the_next_run(
    hub: TestHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.pwrite
    written = [0]

    def write(fd: int, data: Any, offset: int) -> int:
        # Only the data runs out of space: the record's 8-byte counters overwrite bytes already allocated.
        if written[0] >= 1024 * 1024 and len(data) > 8:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, data, offset)
        if len(data) > 8:  # data, not the piece record's 8-byte counters
            written[0] += n
        return n

    monkeypatch.setattr(record.os, "pwrite", write)
    with pytest.raises(failures.DiskFailure, match="not enough space"):
        fetch(hub, tmp_path)
    monkeypatch.undo()
    assert partials(tmp_path)[0].stat().st_size == 1024 * 1024
    r = fetch(hub, tmp_path)
    assert r.verified and r.resumed_from == 1024 * 1024


# --- progress ---------------------------------------------------------------------------------


def test_lines_progress_has_whole_lines_with_percentages(hub: TestHub, tmp_path: Path) -> None:
    stream = io.StringIO()
    fetch(hub, tmp_path, progress=make_progress("lines", stream))
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert all(line.startswith("model.pth: ") for line in lines)
    assert any(re.match(r"model\.pth: [1-9][0-9]% [0-9.]+/3\.1 MB ", line) for line in lines)
    assert lines[-1].startswith("model.pth: 100% 3.1/3.1 MB")
    assert len(lines) <= 12  # at most one line per 10 %, plus start and end


def test_empty_file_needs_no_request(hub: TestHub, tmp_path: Path) -> None:
    empty = hashlib.sha256(b"").hexdigest()
    r = fetch(hub, tmp_path, remote(hub, "config.json", path="empty.txt", size=0, sha256=empty))
    assert r.verified and r.fetched_bytes == 0 and hub.requests == []
    assert (tmp_path / "out" / "empty.txt").read_bytes() == b""


def test_bad_header_value_never_shows_in_the_error(hub: TestHub, tmp_path: Path) -> None:
    rf = remote(hub)
    bad = {"authorization": f"Bearer {TOKEN}\n"}
    with pytest.raises(failures.HubUnreachable) as info:
        fetch_all([rf], tmp_path / "out", tmp_path / "out" / ".gatedfetch", bad,
                   progress=make_progress("quiet"), endpoint=hub.url)
    assert TOKEN not in str(info.value) + info.value.fix
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_resets_without_range_support_still_give_up(hub: TestHub, tmp_path: Path) -> None:
    hub.settings.ignore_range = True  # every retry starts over at 0 and is cut at the same place
    hub.faults.add(Fault("model.pth", server="cdn", close_after=2 * 1024 * 1024, times=99))
    with pytest.raises(failures.HubUnreachable, match="after 3 attempts"):
        fetch(hub, tmp_path, retries=3)
    assert len(gets(hub, "cdn")) == 3
