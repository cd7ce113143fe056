"""The body of one answer into one piece: each slice written at its offset as it comes, offered to the hash,
counted; the probe's rate measured over its first PROBE_BYTES; the answer's pace held to its floor (watch.Pace)."""

from __future__ import annotations

import http.client
import time
from typing import Protocol

from .. import failures
from ..settings import current
from ..store import Piece
from .http import Response, Retry, describe, read_ahead
from .job import Job
from .watch import Pace

POLL = 0.2  # how often a waiting thread looks at the cancel flag and the pace
PROBE_BYTES = 2 << 20  # the probe's speed is measured over its first 2 MiB


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

