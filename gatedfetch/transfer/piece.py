"""One request for a piece of a big file, and what its answer means: a `206` for the range asked, a `200` (the
Range ignored: the file goes on as one stream), another range, no Content-Length, a 416, a CDN's 403 (a signed
URL that expired: a fresh one from /resolve, at once; one that a fresh URL gets again is a refusal), 429 and 5xx
(retried), and a 4xx for the caller to classify. The piece is asked from the file's Location (location.py): one
/resolve for every piece while its URL lasts. The pool (fetch.py) schedules the pieces and retries; this judges
answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .. import failures
from ..store import Piece
from .http import CONTENT_RANGE, Client, Fatal, Response, Retry, drain, refusal, where
from .job import Job

# Takes the body into a piece: (the answer, the piece, where the body ends, whether it has a length, its origin).
Reader = Callable[[Response, Piece, int, bool, str], None]


def range_header(start: int, end: int, size: int) -> str:
    return f"bytes={start}-" if end >= size else f"bytes={start}-{end - 1}"


def attempt(client: Client, job: Job, piece: Piece, headers: Mapping[str, str], read: Reader) -> Piece | None:
    """One request for what `piece` lacks, and what its answer means. `read(resp, piece, end, bounded, at)` takes
    the body into the piece this stream then holds, up to `end`. Returns that piece (None: it gave it up because
    the file was planned anew); raises Retry for what another attempt may fix, HttpRefused for a 4xx the caller
    classifies."""
    rf = job.rf
    start = piece.start + piece.done
    ranged = start > 0 or piece.end < rf.size
    used = job.location.get(client, headers)
    hdrs = dict(headers)
    if ranged:
        hdrs["Range"] = range_header(start, piece.end, rf.size)
    resp = client.open(used.url, hdrs, home=rf.url)
    try:
        status, at = resp.status, where(resp.url)
        if status in (200, 206):
            job.location.served(used)
            job.waited(resp.waited)
            encoding = resp.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise Fatal(f"{at} sent the file with Content-Encoding {encoding}, not as is")
            length = resp.headers.get("content-length", "").strip()
            if status == 200:
                if length.isdigit() and int(length) != rf.size:
                    raise job.integrity(failures.size_mismatch(rf.path, rf.size, int(length)))
                if ranged:  # the Range was ignored: the body is the whole file from byte 0
                    if job.ranged:
                        raise Retry(f"{at} ignored the Range of a piece")
                    piece = job.restart_single(hold=True)
                end = rf.size
            else:
                m = CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
                if m is None:
                    raise Retry(f"206 without a valid Content-Range from {at}")
                if m.group(3) != "*" and int(m.group(3)) != rf.size:
                    raise job.integrity(failures.size_mismatch(rf.path, rf.size, int(m.group(3))))
                if int(m.group(1)) != start or int(m.group(2)) < start:
                    if job.ranged:
                        raise Retry(f"{at} answered another range than the one asked")
                    job.restart_single()  # not the range we asked for: start over from byte 0
                    return None
                if not length.isdigit() and job.probing:
                    job.one_stream()  # can't tell a cut body from a whole one: one stream for this file
                    return None
                end = min(piece.end, int(m.group(2)) + 1)
            read(resp, piece, end, length.isdigit(), at)
            return piece
        if status == 416 and start and job.on_416():
            return None
        verdict = refusal(resp, rf.url)
        if isinstance(verdict, Retry) and verdict.fresh_url and not job.location.refused(used):
            raise Fatal(f"{at} refused {rf.path} with a fresh signed URL from the hub: {verdict.cause}")
        raise verdict
    finally:
        if resp.status in (200, 206):
            resp.release()  # the connection is kept only when the body was read to its end
        else:
            drain(resp)

