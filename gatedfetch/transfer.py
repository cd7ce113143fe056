"""Verified, resumable, lock-safe transfer of the repo's files.

huggingface_hub does auth, metadata and URLs; this module owns the bytes, because the library's
own loop checks only byte counts, deletes partial files on failure, never resumes across runs and
reads through a slow httpx session (see HUB_PROTOCOL.md).

One file, one `fetch_file` call:

* **Verified while it arrives.** A reader thread fills a small ring of preallocated buffers with
  `readinto`; the calling thread writes each buffer with `os.write` and feeds it to sha256 (and,
  for regular files, the git blob sha1) in the same pass. Both hashing and the socket read release
  the GIL, so the network overlaps the hashing. No buffer is copied in Python, nothing is read twice
  (except a partial from an earlier run, re-hashed once to rebuild the hash state).
* **Resumable across runs.** Bytes land in `work_dir/partial/<key>.part`, the key being the expected
  hash (or a digest of url+size when the Hub gives none), so a partial of another revision's content
  is never mixed in. A later run re-hashes the partial and asks for `Range: bytes=N-`. Only a
  complete, verified file is fsync'ed and `os.replace`d into `dest`; a mismatch deletes the partial.
* **Retried within a run**: 5xx, 408, 429 (`Retry-After`), resets, timeouts and cut-off bodies, with a
  bounded exponential backoff, each retry resuming from the bytes on disk.
* **Steady disk writes**: a background fdatasync every 64 MiB keeps dirty pages few (see _Flusher).
* **Lock-safe**: a per-content `filelock.FileLock` serialises processes and threads on one partial.
* **Plain HTTP(S) `/resolve` only, never Xet.** huggingface_hub's Xet path runs only when a server
  advertises Xet and then checks no hash either; the Hub serves every file over `/resolve` (a redirect
  to its CDN, with Range), so that is the one path here, whatever HF_HUB_DISABLE_XET says.
* **The token stays with the Hub**: `Authorization` goes only to the origin of the resolve URL, never
  to the CDN it redirects to; no header value ever reaches a message, a log or an exception.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from filelock import FileLock
from filelock import Timeout as LockTimeout

from . import failures
from .progress import Progress

# 8 MiB reads: HUB_PROTOCOL.md's measurements, and ours (see the report), put the knee there.
# BUFFERS of them per file in flight: one being filled from the socket, one being hashed and
# written, one spare so neither side waits on the other. 4 workers x 3 x 8 MiB = 96 MiB at most.
BUFFER_SIZE = 8 << 20
BUFFERS = 3
READ_SLICE = 1 << 20  # one read call; a buffer is handed to the writer when full ...
HANDOFF_SECONDS = 0.25  # ... or when this long has passed since it started filling
MAX_REDIRECTS = 5
BACKOFF_BASE = 0.5  # seconds before the 2nd attempt; doubles each time ...
BACKOFF_CAP = 8.0  # ... up to this
RETRY_AFTER_CAP = 30.0  # a server's Retry-After is honoured up to this many seconds
PROGRESS_RESET = 1 << 20  # an attempt that took the file this much further starts a fresh retry budget
POLL = 0.2  # how often a waiting thread looks at the cancel flag
# The partial is fdatasync'ed in the background every FLUSH_EVERY bytes and its clean pages
# dropped from the page cache (see _Flusher for why and the measurements).
FLUSH_EVERY = 64 << 20
DROP_CACHE = True
WORKERS = 4

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_HEX_DIGEST = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteFile:
    path: str  # posix path inside the repo, e.g. "model.pth"
    size: int  # expected size in bytes
    url: str  # the resolve URL (built by the caller)
    sha256: str | None  # expected sha256 (LFS oid) when the Hub gives one
    blob_sha1: str | None  # expected git blob sha1 for regular files


@dataclass
class FileResult:
    path: str
    size: int
    sha256: str  # sha256 of the content (always computed)
    verified: bool  # True when checked against sha256 or blob_sha1 from the Hub
    fetched_bytes: int  # bytes received over the network in this run
    resumed_from: int  # bytes reused from a partial file of an earlier run


class HttpRefused(Exception):
    """A non-retryable HTTP answer (4xx other than 408/429) for the caller to classify.

    `headers` are the response's (case-insensitive lookup), never the request's."""

    def __init__(self, status: int, headers: Mapping[str, str], url: str) -> None:
        self.status = status
        self.headers = headers
        self.url = url
        super().__init__(f"HTTP {status} for {_safe_url(url)}")


class Cancelled(Exception):
    """The transfer was stopped because another file failed or the user interrupted."""


# --- small helpers ----------------------------------------------------------------------------


class _Headers(Mapping[str, str]):
    """Response headers with case-insensitive lookup (what the caller's X-Error-Code check needs)."""

    def __init__(self, items: Iterator[tuple[str, str]] | Sequence[tuple[str, str]]) -> None:
        self._d: dict[str, str] = {}
        for k, v in items:
            self._d[k.lower()] = v if k.lower() not in self._d else f"{self._d[k.lower()]}, {v}"

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d


def _safe_url(url: str) -> str:
    """The URL without query or fragment (a CDN's signed query is a short-lived credential)."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc.rpartition('@')[2]}{p.path}"


def _origin(url: str) -> tuple[str, str, int]:
    p = urlsplit(url)
    scheme = p.scheme.lower()
    return scheme, (p.hostname or "").lower(), p.port or (443 if scheme == "https" else 80)


def _where(url: str) -> str:
    _, host, port = _origin(url)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(exc: BaseException) -> str:
    """A short cause for a network error; exception texts here never hold request headers."""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def content_key(rf: RemoteFile) -> str:
    """The name of `rf`'s partial and lock: its expected hash, else a digest of url and size."""
    for digest in (rf.sha256, rf.blob_sha1):
        if digest and _HEX_DIGEST.fullmatch(digest.lower()):
            return digest.lower()
    return "u" + hashlib.sha256(f"{rf.url}\n{rf.size}".encode()).hexdigest()[:40]


def partial_bytes(work_dir: Path, expected_hash: str | None, size: int) -> int:
    """Bytes of a usable partial for the content with this hash (for the caller's disk check)."""
    if not expected_hash or not _HEX_DIGEST.fullmatch(expected_hash.lower()):
        return 0
    try:
        have = (work_dir / "partial" / f"{expected_hash.lower()}.part").stat().st_size
    except OSError:
        return 0
    return have if have <= size else 0


def _disk_failure(exc: OSError, folder: Path, needed: int) -> failures.Failure:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = 0
        return failures.no_space(str(folder), needed, free)
    return failures.not_writable(str(folder), exc.strerror or type(exc).__name__)


def _unsafe_path(path: str) -> failures.Failure:
    return failures.unsafe_path(path)


def _sleep(seconds: float, cancel: threading.Event | None) -> None:
    """Backoff sleep; tests replace it to record the delays instead of waiting."""
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise Cancelled()


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


# --- HTTP: stdlib http.client, or huggingface_hub's httpx session behind a proxy -------------


class _Response(Protocol):
    status: int
    reason: str
    headers: _Headers

    def readinto(self, buf: bytearray) -> int: ...

    def abort(self) -> None: ...  # make a read blocked in another thread return

    def close(self) -> None: ...


_ssl_lock = threading.Lock()
_ssl_ctx: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """The same trust as huggingface_hub's session (httpcore2's default: SSL_CERT_FILE/DIR, then
    the system store), so a host the metadata calls reached is verified the same way here."""
    global _ssl_ctx
    with _ssl_lock:
        if _ssl_ctx is None:
            try:
                import httpcore2

                _ssl_ctx = httpcore2.default_ssl_context()
            except (ImportError, AttributeError):
                _ssl_ctx = ssl.create_default_context()
        return _ssl_ctx


class _StdlibResponse:
    def __init__(self, conn: http.client.HTTPConnection, sock: socket.socket | None, resp: http.client.HTTPResponse):
        self._conn = conn
        self._sock = sock
        self._resp = resp
        self.status = resp.status
        self.reason = resp.reason
        self.headers = _Headers(resp.getheaders())

    def readinto(self, buf: bytearray) -> int:
        # http.client's readinto blocks until the whole buffer is full: on a slow link an 8 MiB
        # buffer would keep seconds of data in memory (lost on a kill, invisible to progress).
        # Read in slices and hand the buffer over once a fraction of a second has passed.
        view = memoryview(buf)
        filled = 0
        started = time.monotonic()
        while filled < len(view):
            n = self._resp.readinto(view[filled : filled + READ_SLICE])
            if not n:
                break
            filled += n
            if time.monotonic() - started >= HANDOFF_SECONDS:
                break
        return filled

    def abort(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._resp.close()
        self._conn.close()


class _Retry(Exception):
    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


def _direct_open(url: str, headers: dict[str, str], timeout: float) -> _Response:
    p = urlsplit(url)
    host = p.hostname or ""
    conn: http.client.HTTPConnection
    if p.scheme == "https":
        conn = http.client.HTTPSConnection(host, p.port, timeout=timeout, context=_ssl_context())
    else:
        conn = http.client.HTTPConnection(host, p.port, timeout=timeout)
    target = (p.path or "/") + (f"?{p.query}" if p.query else "")
    try:
        conn.request("GET", target, headers=headers)
        sock = conn.sock  # getresponse() drops it from conn when the body is close-delimited
        resp = conn.getresponse()
    except ssl.SSLCertVerificationError as exc:
        conn.close()
        raise _Fatal(f"TLS certificate of {_where(url)} not trusted: {exc.verify_message}") from None
    except ValueError:  # http.client quotes a bad header value, i.e. maybe the token: never show it
        conn.close()
        raise _Fatal("a request header has a value HTTP cannot carry (value not shown)") from None
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise _Retry(f"{_describe(exc)} ({_where(url)})") from None
    return _StdlibResponse(conn, sock, resp)


class _HttpxResponse:
    """A response from huggingface_hub's httpx session, read like the stdlib one."""

    def __init__(self, resp: Any) -> None:
        self._resp = resp
        self.status = int(resp.status_code)
        self.reason = str(resp.reason_phrase)
        self.headers = _Headers(list(resp.headers.items()))
        self._chunks: Iterator[bytes] = resp.iter_raw(BUFFER_SIZE)
        self._left = memoryview(b"")

    def readinto(self, buf: bytearray) -> int:
        import httpx2

        if not self._left:
            try:
                self._left = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            except httpx2.TransportError as exc:
                raise ConnectionError(type(exc).__name__) from None
        k = min(len(self._left), len(buf))
        buf[:k] = self._left[:k]
        self._left = self._left[k:]
        return k

    def abort(self) -> None:
        pass  # the read returns within the timeout

    def close(self) -> None:
        self._resp.close()


def _proxied_open(url: str, headers: dict[str, str], timeout: float) -> _Response:
    # Behind HTTP(S)_PROXY / ALL_PROXY we go through huggingface_hub's httpx session: it already
    # speaks to proxies (CONNECT tunnels, proxy auth, NO_PROXY) exactly as the metadata calls did,
    # which http.client cannot do without reimplementing it. Slower, but the same verification,
    # resume and retry logic runs on top, and correctness beats speed there.
    import httpx2
    from huggingface_hub import get_session

    client = get_session()
    try:
        req = client.build_request("GET", url, headers=headers, timeout=timeout)
        resp = client.send(req, stream=True, follow_redirects=False)
    except httpx2.TransportError as exc:
        raise _Retry(f"{type(exc).__name__} ({_where(url)}, through the proxy)") from None
    except (ValueError, TypeError):  # an invalid header value; its text may hold the token
        raise _Fatal("a request header has a value HTTP cannot carry (value not shown)") from None
    return _HttpxResponse(resp)


def _uses_proxy(url: str) -> bool:
    p = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(p.scheme) or proxies.get("all")):
        return False
    host = p.hostname or ""
    return not urllib.request.proxy_bypass(f"{host}:{p.port}" if p.port else host)


class _Fatal(Exception):
    """A network problem no retry will fix (bad TLS certificate, a redirect loop)."""


# --- one file -----------------------------------------------------------------------------------


class _Hashes:
    def __init__(self, rf: RemoteFile) -> None:
        self.rf = rf
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        # The git blob sha1 only where no sha256 is known: for an LFS file the Hub's blob id is the
        # pointer's, not the content's, and the content is covered by the sha256 anyway.
        self.sha1 = (
            hashlib.sha1(b"blob %d\0" % self.rf.size, usedforsecurity=False)
            if self.rf.sha256 is None and self.rf.blob_sha1
            else None
        )

    def update(self, data: memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)


_datasync = getattr(os, "fdatasync", os.fsync)


class _Flusher:
    """`fdatasync`s the partial in a background thread every FLUSH_EVERY bytes written.

    Measured on the target VM (1 GiB, ext4, 2 cores): writing 1 GiB then one fsync took 3-5 s,
    because dirty pages pile up and fresh page-cache pages are slow to get there; with a background
    fdatasync every 64 MiB the same writes took 0.5-0.7 s in all, and the final fsync ~0. Dropping
    the synced pages (POSIX_FADV_DONTNEED: it never drops dirty pages) recycles the same few pages:
    a whole fetch_file of 1 GiB went from 2.3-2.6 s (fdatasync only) to 1.2-1.5 s. Side effects,
    both wanted: a partial is durable as it grows (a power cut loses at most the last 64 MiB), and
    a 3.6 GB download does not evict everyone else's page cache."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wake = threading.Event()
        self._stop = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="gatedfetch-flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                _datasync(self._fd)
                if DROP_CACHE and hasattr(os, "posix_fadvise"):  # Linux; macOS has neither call
                    os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError as exc:
                self.error = exc
                return

    def kick(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()


class _Transfer:
    def __init__(
        self,
        rf: RemoteFile,
        dest: Path,
        part: Path,
        marker: Path,
        headers: Mapping[str, str],
        progress: Progress,
        endpoint: str,
        retries: int,
        timeout: float,
        cancel: threading.Event | None,
    ) -> None:
        self.rf = rf
        self.dest = dest
        self.part = part
        self.marker = marker
        self.headers = {k: v for k, v in headers.items() if k.lower() not in ("range", "accept-encoding", "host")}
        self.progress = progress
        self.endpoint = endpoint
        self.retries = max(1, retries)
        self.timeout = timeout
        self.cancel = cancel
        self.hashes = _Hashes(rf)
        self.fd = -1
        self.offset = 0  # bytes on disk in the partial, all hashed
        self.fetched = 0
        self.resumed_from = 0
        self.restarted_416 = False
        self.fresh_retry_done = False
        self.flusher: _Flusher | None = None
        self.unflushed = 0
        size = min(BUFFER_SIZE, max(rf.size, 1 << 16))  # small files need no 8 MiB buffers
        self.buffers = [bytearray(size) for _ in range(BUFFERS)]

    # -- the partial file ----------------------------------------------------------------------

    def _open_partial(self) -> None:
        try:
            self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            have = os.fstat(self.fd).st_size
            if have > self.rf.size:  # not a prefix of this content: discard
                os.ftruncate(self.fd, 0)
                have = 0
            buf = self.buffers[0]
            pos = 0
            while pos < have:  # rebuild the hash state from the bytes of an earlier run
                n = os.readv(self.fd, [buf])
                if n == 0:
                    break
                with memoryview(buf) as mv:
                    self.hashes.update(mv[:n])
                pos += n
            os.lseek(self.fd, pos, os.SEEK_SET)
        except OSError as exc:
            raise _disk_failure(exc, self.part.parent, self.rf.size) from None
        self.offset = self.resumed_from = pos

    def _restart(self) -> None:
        """Throw away the partial's bytes and start again from byte 0."""
        try:
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
        except OSError as exc:
            raise _disk_failure(exc, self.part.parent, self.rf.size) from None
        self.progress.advance(self.rf.path, -self.offset)
        if self.flusher is None and self.rf.size > FLUSH_EVERY:
            self.flusher = _Flusher(self.fd)
        self.hashes.reset()
        self.offset = 0
        self.resumed_from = 0

    def _discard(self) -> None:
        self._stop_flusher()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            self.part.unlink()
        except FileNotFoundError:
            pass

    def _integrity(self, failure: failures.Failure) -> failures.Failure:
        """The bytes are not the expected ones: they never reach dest and the partial goes."""
        self._discard()
        return failure

    def _write(self, buf: bytearray, n: int) -> None:
        with memoryview(buf) as whole, whole[:n] as data:
            done = 0
            try:
                while done < n:
                    done += os.write(self.fd, data[done:])
            except OSError as exc:
                # ENOSPC keeps the partial: every byte in it is good, the next run resumes.
                raise _disk_failure(exc, self.part.parent, self.rf.size - self.offset) from None
            self.hashes.update(data)
        self.offset += n
        self.fetched += n
        self.progress.advance(self.rf.path, n)
        self.unflushed += n
        if self.flusher is not None and self.unflushed >= FLUSH_EVERY:
            if self.flusher.error is not None:
                raise _disk_failure(self.flusher.error, self.part.parent, self.rf.size - self.offset)
            self.unflushed = 0
            self.flusher.kick()

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> FileResult:
        try:
            self._open_partial()
            self.progress.start_file(self.rf.path, self.rf.size, self.offset)
            if self.rf.size - self.offset > FLUSH_EVERY:
                self.flusher = _Flusher(self.fd)
            return self._loop()
        finally:
            self._stop_flusher()
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
            self.progress.end_file(self.rf.path)

    def _stop_flusher(self) -> None:
        if self.flusher is not None:
            self.flusher.stop()  # before the fd is closed or fsync'ed
            self.flusher = None

    def _loop(self) -> FileResult:
        fails = 0
        best = self.offset  # the furthest the partial has been
        while True:
            if self.offset >= self.rf.size:
                result = self._finish()
                if result is not None:
                    return result
                continue
            _check(self.cancel)
            try:
                self._attempt()
            except _Fatal as exc:
                raise failures.hub_unreachable(self.endpoint, str(exc)) from None
            except _Retry as exc:
                # An attempt that took the file further than ever proves the link works: the budget
                # restarts (as huggingface_hub does), so a long download over a flaky link is not cut
                # short. Still bounded: each such attempt must push the high-water mark on by at
                # least PROGRESS_RESET bytes (a server that ignores Range and resets every time
                # cannot loop forever).
                if self.offset >= best + PROGRESS_RESET:
                    fails = 0
                best = max(best, self.offset)
                fails += 1
                if fails >= self.retries:
                    cause = f"{exc.cause} after {fails} attempt{'s' if fails > 1 else ''}"
                    raise failures.hub_unreachable(self.endpoint, cause) from None
                delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (fails - 1))
                if exc.retry_after is not None:
                    delay = min(RETRY_AFTER_CAP, exc.retry_after)
                _sleep(delay, self.cancel)

    def _open(self) -> tuple[_Response, str]:
        """GET the file, following redirects; `Authorization` only ever goes to the first origin."""
        url = self.rf.url
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            if urlsplit(url).scheme not in ("http", "https"):
                raise _Fatal(f"refusing to follow a redirect to a {urlsplit(url).scheme or 'relative'} URL")
            same_origin = _origin(url) == origin
            hdrs = {k: v for k, v in self.headers.items() if same_origin or k.lower() != "authorization"}
            hdrs["Accept-Encoding"] = "identity"
            if self.offset:
                hdrs["Range"] = f"bytes={self.offset}-"
            resp = (_proxied_open if _uses_proxy(url) else _direct_open)(url, hdrs, self.timeout)
            if resp.status not in _REDIRECT_STATUS:
                return resp, url
            location = resp.headers.get("location")
            resp.close()
            if not location:
                raise _Retry(f"{resp.status} redirect without a Location from {_where(url)}")
            url = urljoin(url, location.strip())
        raise _Fatal(f"more than {MAX_REDIRECTS} redirects from {_where(self.rf.url)}")

    def _attempt(self) -> None:
        """One request. Returns when the body is consumed to the end or the partial was restarted;
        raises _Retry for what another attempt may fix."""
        resp, url = self._open()
        try:
            status = resp.status
            where = _where(url)
            if status in (200, 206):
                encoding = resp.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise _Fatal(f"{where} sent the file with Content-Encoding {encoding}, not as is")
                length = resp.headers.get("content-length")
                if status == 206:
                    m = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
                    if m is None:
                        raise _Retry(f"206 without a valid Content-Range from {where}")
                    if m.group(3) != "*" and int(m.group(3)) != self.rf.size:
                        raise failures.size_mismatch(self.rf.path, self.rf.size, int(m.group(3)))
                    if int(m.group(1)) != self.offset:
                        self._restart()  # not the range we asked for: start over without Range
                        return
                else:
                    if length is not None and length.strip().isdigit() and int(length) != self.rf.size:
                        raise failures.size_mismatch(self.rf.path, self.rf.size, int(length))
                    if self.offset:
                        self._restart()  # the server ignored Range: its body starts at byte 0
                self._stream(resp, where)
                return
            if status == 416 and self.offset and not self.restarted_416:
                self.restarted_416 = True
                self._restart()
                return
            retry_after = resp.headers.get("retry-after", "").strip()
            if status in _RETRYABLE_STATUS or status >= 500:
                raise _Retry(
                    f"{status} {resp.reason} from {where}".replace("  ", " "),
                    float(retry_after) if retry_after.isdigit() else None,
                )
            if 400 <= status < 500:
                raise HttpRefused(status, resp.headers, url)
            raise _Retry(f"unexpected answer {status} {resp.reason} from {where}")
        finally:
            resp.close()

    def _stream(self, resp: _Response, where: str) -> None:
        """Read the body to its end into the partial: a reader thread fills the buffers, this
        thread writes and hashes them in order."""
        free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        full: queue.SimpleQueue[tuple[bytearray, int, BaseException | None]] = queue.SimpleQueue()
        for b in self.buffers:
            free.put(b)

        def reader() -> None:
            while True:
                buf = free.get()
                if buf is None:
                    return
                try:
                    n = resp.readinto(buf)
                except BaseException as exc:  # handed over to the consumer, which decides
                    full.put((buf, 0, exc))
                    return
                full.put((buf, n, None))
                if n == 0:
                    return

        thread = threading.Thread(target=reader, name=f"gatedfetch-read:{self.rf.path}", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    buf, n, exc = full.get(timeout=POLL)
                except queue.Empty:
                    _check(self.cancel)
                    continue
                if exc is not None:
                    if isinstance(exc, (OSError, http.client.HTTPException)):
                        raise _Retry(f"{_describe(exc)} after {self.offset} of {self.rf.size} bytes ({where})")
                    raise exc
                if n == 0:
                    break
                if self.offset + n > self.rf.size:
                    raise self._integrity(failures.size_mismatch(self.rf.path, self.rf.size, self.offset + n))
                self._write(buf, n)
                free.put(buf)
                _check(self.cancel)
        finally:
            free.put(None)
            if thread.is_alive():
                resp.abort()
                thread.join(self.timeout + 1)
        if self.offset < self.rf.size:
            raise _Retry(f"the body stopped at {self.offset} of {self.rf.size} bytes ({where})")

    def _finish(self) -> FileResult | None:
        """Verify the complete partial and move it into place; None when it must be fetched anew."""
        got = self.hashes.sha256.hexdigest()
        mismatch: tuple[str, str, str] | None = None
        if self.rf.sha256 is not None:
            if got != self.rf.sha256.lower():
                mismatch = ("sha256", self.rf.sha256.lower(), got)
        elif self.hashes.sha1 is not None and self.rf.blob_sha1 is not None:
            got1 = self.hashes.sha1.hexdigest()
            if got1 != self.rf.blob_sha1.lower():
                mismatch = ("git blob sha1", self.rf.blob_sha1.lower(), got1)
        if mismatch is not None:
            if self.resumed_from and not self.fresh_retry_done:
                # The bad bytes may be the earlier run's (a crash can leave garbage at the end of a
                # file): fetch it once more from scratch before blaming the server.
                self.fresh_retry_done = True
                self._restart()
                return None
            raise self._integrity(failures.hash_mismatch(self.rf.path, *mismatch))
        verified = self.rf.sha256 is not None or self.hashes.sha1 is not None
        folder = self.dest.parent
        self._stop_flusher()
        try:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(self.part, self.dest)
        except OSError as exc:
            raise _disk_failure(exc, folder, 0) from None
        _fsync_dir(folder)
        _write_marker(self.marker, self.rf, self.dest, got, verified)
        return FileResult(self.rf.path, self.rf.size, got, verified, self.fetched, self.resumed_from)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Completion protocol (requirement: two processes on one folder both end with good files, one
# transfer). The lock serialises them; the loser must then tell "the winner just completed this
# file" from "dest is some older file". Re-hashing dest would cost seconds per GB, so the winner,
# right after os.replace, atomically writes a small marker `done/<key>-<path digest>.json` holding
# dest's (device, inode, size, mtime_ns) and its hash. Whoever holds the lock next trusts dest only
# if its stat still matches the marker: any later change to dest (another revision replacing it, an
# edit) changes the inode or mtime and voids the marker. The marker is an optimisation: losing it
# only means a re-download.


def _write_marker(marker: Path, rf: RemoteFile, dest: Path, sha256: str, verified: bool) -> None:
    try:
        st = dest.stat()
        doc = {
            "path": rf.path,
            "size": st.st_size,
            "sha256": sha256,
            "verified": verified,
            "dev": st.st_dev,
            "ino": st.st_ino,
            "mtime_ns": st.st_mtime_ns,
        }
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, marker)
    except OSError:
        pass


def _completed(rf: RemoteFile, dest: Path, marker: Path) -> FileResult | None:
    try:
        doc = json.loads(marker.read_text())
        st = dest.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    same = (
        doc.get("path") == rf.path
        and doc.get("size") == rf.size == st.st_size
        and doc.get("dev") == st.st_dev
        and doc.get("ino") == st.st_ino
        and doc.get("mtime_ns") == st.st_mtime_ns
        and isinstance(doc.get("sha256"), str)
    )
    if not same:
        return None
    return FileResult(rf.path, rf.size, doc["sha256"], bool(doc.get("verified")), 0, 0)


def _acquire(lock: FileLock, cancel: threading.Event | None, folder: Path) -> None:
    try:
        if cancel is None:
            lock.acquire()
            return
        while True:
            try:
                lock.acquire(timeout=POLL)
                return
            except LockTimeout:
                _check(cancel)
    except OSError as exc:
        raise _disk_failure(exc, folder, 0) from None


def fetch_file(
    rf: RemoteFile,
    dest: Path,
    work_dir: Path,
    headers: Mapping[str, str],
    *,
    progress: Progress,
    endpoint: str,
    retries: int = 5,
    timeout: float = 30.0,
    cancel: threading.Event | None = None,
) -> FileResult:
    """Fetch one file into `dest`, verified; resume a partial of an earlier run; retry within bounds.

    Raises a `failures.Failure` (integrity, hub unreachable, disk), `HttpRefused` for a 4xx the caller
    classifies, or `Cancelled` when `cancel` is set."""
    key = content_key(rf)
    folders = [work_dir / "partial", work_dir / "locks", work_dir / "done"]
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_failure(exc, work_dir, rf.size) from None
    path_digest = hashlib.sha256(rf.path.encode()).hexdigest()[:16]
    marker = work_dir / "done" / f"{key}-{path_digest}.json"

    def already() -> FileResult | None:
        done = _completed(rf, dest, marker)
        if done is not None:
            progress.start_file(rf.path, rf.size, rf.size)
            progress.end_file(rf.path)
        return done

    if (done := already()) is not None:
        return done
    lock = FileLock(str(work_dir / "locks" / f"{key}.lock"))
    _acquire(lock, cancel, work_dir / "locks")
    try:
        if (done := already()) is not None:  # another process finished it while we waited
            return done
        part = work_dir / "partial" / f"{key}.part"
        t = _Transfer(rf, dest, part, marker, headers, progress, endpoint, retries, timeout, cancel)
        return t.run()
    finally:
        lock.release()


def _dest(local_dir: Path, path: str) -> Path:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise _unsafe_path(path)
    return local_dir.joinpath(*pure.parts)


def fetch_all(
    files: Sequence[RemoteFile],
    local_dir: Path,
    work_dir: Path,
    headers: Mapping[str, str],
    *,
    progress: Progress,
    endpoint: str,
    workers: int = WORKERS,
    retries: int = 5,
    timeout: float = 30.0,
) -> list[FileResult]:
    """Fetch `files` into `local_dir` with a few threads, biggest first; results in input order.

    The first failure stops the others (their partials stay for the next run) and is re-raised;
    so is a KeyboardInterrupt, after the workers have stopped."""
    dests = [_dest(local_dir, rf.path) for rf in files]
    progress.plan(sum(rf.size for rf in files))
    order = sorted(range(len(files)), key=lambda i: -files[i].size)
    results: list[FileResult | None] = [None] * len(files)
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(files) or 1)), thread_name_prefix="gatedfetch")
    futures: dict[Future[FileResult], int] = {}
    try:
        for i in order:
            fut = pool.submit(
                fetch_file,
                files[i],
                dests[i],
                work_dir,
                headers,
                progress=progress,
                endpoint=endpoint,
                retries=retries,
                timeout=timeout,
                cancel=cancel,
            )
            futures[fut] = i
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    raise exc
                results[futures[fut]] = fut.result()
    except BaseException:
        cancel.set()
        for fut in futures:
            fut.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [r for r in results if r is not None]
