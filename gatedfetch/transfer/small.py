"""One small file (at most store.small.SMALL_FILE bytes): one request, the body read whole into memory, its hash
checked there, then written and moved into place (store.small.land). No partial, no lock, no marker, no hash
thread: the per-file work a big file needs costs a small one more than its bytes do (see store/small.py)."""

from __future__ import annotations

import http.client
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import failures, store
from ..digest import Digest
from .body import SLICE
from .http import Client, Fatal, Retry, describe, drain, refusal, where
from .records import FileResult, RemoteFile, content_key


@dataclass
class SmallFile:
    """A small file waiting for a stream, and what came of it."""

    rf: RemoteFile
    dest: Path
    result: FileResult | None = None


def fetch_small(
    client: Client, rf: RemoteFile, headers: Mapping[str, str], dest: Path, work_dir: Path,
    heard: Callable[[], None] = lambda: None,
) -> FileResult:
    """One attempt: fetch, verify and land `rf`. Raises Retry for what another attempt may fix, HttpRefused for
    a 4xx the caller classifies, Fatal, or the integrity / disk failure. `heard()` is called as bytes come (the
    run's silence watchdog: a small file on a slow link takes a while too)."""
    body = _get(client, rf, headers, heard) if rf.size else b""
    digest = Digest(rf.size, rf.sha256, rf.blob_sha1)
    digest.update(body)
    mismatch = digest.mismatch()
    if mismatch is not None:
        raise failures.hash_mismatch(rf.path, *mismatch)
    store.small.land(work_dir, content_key(rf), dest, body)
    return FileResult(rf.path, rf.size, digest.sha256.hexdigest(), digest.checked, rf.size, 0)


def _get(client: Client, rf: RemoteFile, headers: Mapping[str, str], heard: Callable[[], None]) -> memoryview:
    """The whole body, exactly `rf.size` bytes."""
    resp = client.open(rf.url, headers)
    try:
        status, at = resp.status, where(resp.url)
        if status == 200:
            encoding = resp.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise Fatal(f"{at} sent the file with Content-Encoding {encoding}, not as is")
            length = resp.headers.get("content-length", "").strip()
            if length.isdigit() and int(length) != rf.size:
                raise failures.size_mismatch(rf.path, rf.size, int(length))
            # One byte more than the file can hold: a server that sends more than the expected size is caught.
            buf = memoryview(bytearray(rf.size + 1))
            got = 0
            try:
                while got <= rf.size and (n := resp.readinto(buf[got : got + SLICE])):
                    got += n
                    heard()
            except (OSError, http.client.HTTPException) as exc:
                raise Retry(f"{describe(exc)} after {got} of {rf.size} bytes ({at})") from None
            if got > rf.size:
                raise failures.size_mismatch(rf.path, rf.size, got)
            if got < rf.size:
                raise Retry(f"the body stopped at {got} of {rf.size} bytes ({at})")
            return buf[:got]
        raise refusal(resp, rf.url)
    finally:
        if resp.status == 200:
            resp.release()  # the connection is kept only when the body was read to its end
        else:
            drain(resp)
