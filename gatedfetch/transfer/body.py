"""The body of one answer into one piece: read ahead by a helper thread, each slice written at its offset as it
comes, offered to the hash, counted; the probe's rate measured over its first PROBE_BYTES; the answer's pace held
to its floor (watch.Pace)."""

from __future__ import annotations

import http.client
import queue
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Protocol

from .. import failures
from ..settings import current
from ..store import Piece
from .http import Response, Retry, describe
from .job import Job
from .watch import Pace

POLL = 0.2  # how often a waiting thread looks at the cancel flag and the pace
PROBE_BYTES = 2 << 20  # the probe's speed is measured over its first 2 MiB


SLICE = 64 << 10  # a buffer is filled in reads of at most this, each reported to `heard` as it comes


def read_ahead(
    resp: Response,
    bufs: Sequence[memoryview],
    limit: int,
    poll: float,
    check: Callable[[], None],
    heard: Callable[[int], None] | None = None,
) -> Generator[memoryview, None, None]:
    """The body, at most `limit` bytes, as slices of `bufs` in order, read by a helper thread.

    One thread that reads a buffer, then writes it, leaves the socket idle while it writes: measured on
    a 2-core machine over loopback, a `pwrite` of 1 MiB into the page cache took as long as its `recv`,
    so one stream ran at half speed. The helper fills the next buffer while the caller writes this one;
    a slice stays the caller's until it asks for the next. `check` runs every `poll` seconds of waiting
    (it raises to stop). A read error is raised here as it came, after the bytes that came before it.
    `heard(n)` is told of every read as it returns (from the helper thread): a rate floor needs the bytes
    as they come, not as whole buffers (one of 1 MiB takes a minute to fill at 16 KiB/s)."""
    free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[memoryview, int, BaseException | None]] = queue.SimpleQueue()
    for b in bufs:
        free.put(b)

    def reader() -> None:
        left = limit
        while left > 0:
            buf = free.get()
            if buf is None:
                return
            want, got = min(len(buf), left), 0
            try:
                while got < want:
                    n = resp.readinto(buf[got : min(want, got + SLICE)])
                    if not n:
                        break
                    got += n
                    if heard is not None:
                        heard(n)
            except BaseException as exc:  # handed to the caller, which decides
                if got:
                    full.put((buf, got, None))
                full.put((memoryview(b""), 0, exc))
                return
            full.put((buf, got, None))
            if not got:
                return
            left -= got
        full.put((memoryview(b""), 0, None))

    thread = threading.Thread(target=reader, name="gatedfetch-read", daemon=True)
    thread.start()
    ended = False
    try:
        while True:
            try:
                buf, n, exc = full.get(timeout=poll)
            except queue.Empty:
                check()
                continue
            if exc is not None:
                raise exc
            if not n:
                ended = True  # the reader is done with the connection, which may serve the next request
                return
            yield buf[:n]
            free.put(buf)
    finally:
        free.put(None)
        if not ended:
            resp.abort()  # the reader may be blocked in a read: make it return
        thread.join()


class Stream(Protocol):
    """What the pool gives a body being read."""

    def count(self, n: int) -> None: ...  # n bytes written (the controller's rate)
    def heard(self) -> None: ...  # a byte came off a socket (the run's silence)
    def floor(self) -> float: ...  # the rate floor of an answer now
    def check_cancel(self) -> None: ...
    def fan_out(self, job: Job, rate: float) -> None: ...  # the probe's rate, once measured


def read_body(
    stream: Stream, resp: Response, piece: Piece, end: int, bounded: bool, at: str, *, job: Job, bufs: list[memoryview]
) -> None:
    """Read the body into `piece` up to `end`, writing each slice at its offset as it comes."""
    rf = job.rf
    pos = piece.start + piece.done
    # Without a Content-Length, ask for one byte more than the file can hold: a server that sends
    # more than the expected size is caught.
    extra = 0 if bounded or end < rf.size else 1
    probe_from, probe_t0 = pos, time.monotonic()
    pace = Pace(current().speed_time, stream.floor)

    def check() -> None:
        stream.check_cancel()
        pace.check(at)

    def heard(n: int) -> None:
        pace.heard(n)
        stream.heard()

    chunks = read_ahead(resp, bufs, end - pos + extra, POLL, check, heard)
    try:
        for data in chunks:
            n = len(data)
            if pos + n > rf.size:
                raise job.integrity(failures.size_mismatch(rf.path, rf.size, pos + n))
            job.partial.write(pos, data)
            job.offer(pos, data)
            job.wrote(piece, n)
            stream.count(n)
            pos += n
            if job.probing and (pos - probe_from >= PROBE_BYTES or pos >= end):
                stream.fan_out(job, (pos - probe_from) / max(time.monotonic() - probe_t0, 1e-6))
            check()
    except (OSError, http.client.HTTPException) as exc:  # from the socket: disk errors come as failures
        raise Retry(f"{describe(exc)} after {pos} of {rf.size} bytes ({at})") from None
    finally:
        chunks.close()
    if pos < end:
        raise Retry(f"the body stopped at {pos} of {rf.size} bytes ({at})")

