"""Fetch files into a folder over a pool of streams: pieces in file order, each retried on its own.

* **One `/resolve` per file, per URL lifetime** (location.py): asked without `Range`, its signed CDN URL serves
  every piece and stream until shortly before it expires, or until the CDN answers 403; a 403 that a fresh URL
  gets again is a refusal, in the CDN's words. The Hub can be 100+ ms away while the CDN edge is near.
* **Pieces sized from the link** (segments.link_piece): once the probe has shown a stream's rate and the round
  trip, the untouched pieces are cut so that a request's wait costs at most a tenth of a piece's time.
* **Probe, then fan out.** The first request of a cut file is a probe: only when it comes back as a
  proper `206` (a `Content-Range` where asked, a `Content-Length`) do the other pieces start. A `200`
  to a ranged request (Range ignored) or no `Content-Length` makes the file one stream.
* **Retries per piece**: resets, timeouts, cut or short bodies (a CDN edge may answer `206` with fewer bytes
  than announced, even none), 5xx, 408 and 429 (`Retry-After`: the refused work waits it out, whichever stream
  takes it up), with a bounded exponential backoff, each retry asking only for what the piece still lacks.
* **As many streams as pay** (streams.py): the pool lets the controller's count of streams take pieces,
  samples the rate every `settings.stream_sample` seconds, and tells it of every refusal (429, 503) and
  fault; a stream over the count once its piece is done, or when refused, lets its piece go and parks, its
  connections closed. `--connections` is the ceiling.
* **Never stuck** (watch.py): an answer under its rate floor (curl's --speed-limit) is cut and asked again; a
  file left to one fast stream gets the others when its rate falls; no byte from anywhere for settings.stall_line
  prints a line, for half of settings.stall_deadline drops every connection, for all of it ends the run (exit 7).
* **Memory bounded whatever the count** (streams.buffer_size): all streams' buffers within 48 MiB.
* **Verified while it arrives** (segments.PrefixHasher), **resumable per piece** (store.Partial), **lock-safe**
  (one `filelock.FileLock` per content serialises processes and threads on a partial).
* **Small files** (store.small) are no jobs: a stream with no piece takes one whole (transfer/small.py); the run
  makes them all durable at once at its end (store.settle), before it returns them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

from .. import failures, store
from ..options import DEFAULT_CONNECTIONS
from ..progress import Progress
from ..settings import DOWNLOAD_RETRIES, current
from ..store import Piece
from . import retry, streams
from .body import POLL, read_body
from .http import Client, Fatal, Retry
from .job import Job
from .piece import attempt
from .records import Cancelled, FileResult, RemoteFile
from .small import SmallFile, fetch_small
from .streams import Usage
from .watch import FLOOR_SHARE, Silence, Verdict

BUFFER_SIZE = 1 << 20  # a stream reads into BUFFERS of these: one being filled, one being written, one spare
BUFFERS = 3  # the first stream's; the others' are smaller when many streams may run (streams.buffer_size)
# The waits (backoff_base before the 2nd attempt, doubling up to backoff_cap; a server's Retry-After honoured up
# to retry_after_cap; each stream's timeout) come from gatedfetch.settings.
PROGRESS_RESET = 1 << 20  # an attempt that took a piece this much further starts a fresh retry budget
FAST_STREAM = 250e6  # a probe (body.PROBE_BYTES) faster than this leaves one stream to fetch the file alone ...
REVISIT = 1.0  # ... until, over this many seconds, it brings less than ...
SLOWED = FAST_STREAM / 2  # ... this many bytes/s: then the others join in


class _Pool:
    """Streams that take pieces from the jobs, in file order, and fetch them; a stream that finds no piece takes
    a small file whole. It schedules through the jobs' methods only (activate, take, release, fan_out,
    restart_single, on_416, finish, close): never by writing a job's fields."""

    def __init__(
        self,
        jobs: list[Job],
        cond: threading.Condition,
        headers: Mapping[str, str],
        endpoint: str,
        connections: int,
        retries: int,
        timeout: float,
        cancel: threading.Event,
        *,
        small: Sequence[SmallFile] = (),
        work_dir: Path | None = None,
        progress: Progress | None = None,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.jobs = jobs
        self.say = say
        self.small = deque(small)  # taken from the left, under `cond`
        self.work_dir = work_dir
        self.progress = progress
        self.headers = {k: v for k, v in headers.items() if k.lower() not in ("range", "accept-encoding", "host")}
        self.headers["Accept-Encoding"] = "identity"
        self.endpoint = endpoint
        self.connections = max(1, connections)
        self.retries = max(1, retries)
        self.timeout = timeout
        self.cancel = cancel
        self.cond = cond  # the jobs' too: the pool waits on it for work, a job's transition notifies it
        self.error: BaseException | None = None
        self.clients: list[Client] = []
        self.steering = streams.Steering(self.connections, max(0.01, current().stream_sample))
        self.live = 0  # stream threads not yet ended
        self.ended = threading.Event()
        self.small_buffers = streams.buffer_size(self.connections, BUFFER_SIZE, BUFFERS)
        self.silence = Silence(current().stall_line, current().stall_deadline)
        self._narrow: dict[int, tuple[float, int]] = {}  # id(job) -> (when, bytes fetched) for a one-stream file

    @property
    def usage(self) -> Usage:
        with self.cond:
            return self.steering.usage()

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._worker, args=(i,), name=f"gatedfetch-stream-{i}", daemon=True)
            for i in range(min(self.connections, sum(job.most_pieces for job in self.jobs) + len(self.small)))
        ]
        self.live = len(threads)
        if not threads:
            self.ended.set()
        for t in threads:
            t.start()
        try:
            while not self.ended.wait(self.steering.interval):
                with self.cond:
                    self.steering.sample()
                    self._revisit()
                    self.cond.notify_all()  # the count may have grown: parked streams look again
                    verdict = self.silence.tick(self.steering.busy > 0)
                if verdict is not None:
                    self._on_silence(verdict)
            for t in threads:
                t.join()
        except BaseException:  # KeyboardInterrupt in the main thread: stop the streams, then re-raise
            self._fail(Cancelled())
            for t in threads:
                t.join()
            raise
        finally:
            for job in self.jobs:
                job.close()  # those not over: the partial stays for the next run
        if self.error is not None:
            raise self.error

    def _revisit(self) -> None:
        """A file left to one fast stream (its probe ran past FAST_STREAM) that now brings less than SLOWED over
        REVISIT seconds gets the other streams (a stream that was fast at first may stall for minutes)."""
        now = time.monotonic()
        for job in self.jobs:
            if not job.narrow:
                continue
            since, fetched = self._narrow.setdefault(id(job), (now, job.fetched))
            if now - since >= REVISIT:
                if (job.fetched - fetched) / (now - since) < SLOWED:
                    job.widen(self.connections)
                self._narrow[id(job)] = (now, job.fetched)

    def _on_silence(self, verdict: Verdict) -> None:
        """No byte from anywhere for a while: say so, then drop every connection (each stream asks anew), then end
        the run naming what it waited for."""
        with self.cond:
            files = sorted({job.rf.path for job in self.jobs if job.inflight})
            hosts = sorted({job.location.where for job in self.jobs if job.inflight})
            clients = list(self.clients)
        what = f"{', '.join(files) or 'the files'} from {', '.join(hosts) or 'the hub'}"
        quiet = f"no byte for {verdict.silent_for:.0f} s while waiting for {what}"
        if verdict.end:
            self._fail(failures.hub_unreachable(self.endpoint, quiet))
            return
        if verdict.line:
            self.say(f"{quiet}; still trying (gives up after {self.silence.deadline:.0f} s of silence)")
        if verdict.nudge:
            for c in clients:
                c.abort()  # each stream's read ends now and its piece is asked again on a new connection

    def _fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.error is None and not isinstance(exc, Cancelled):
                self.error = exc
            self.cancel.set()
            self.cond.notify_all()
            clients = list(self.clients)
        for c in clients:
            c.abort()

    def _take(self, client: Client) -> tuple[Job, Piece | None] | SmallFile | None:
        """The next piece to fetch (while fewer streams than the controller's count are busy), or a job ready to
        verify (piece None), else a small file (never before a piece a stream could fetch); None when all is
        done. A stream kept waiting by the count closes its connections."""
        with self.cond:
            while not self.cancel.is_set():
                pending = False
                allowed = self.steering.busy < self.steering.target
                for job in self.jobs:
                    if job.waiting and not job.activate():
                        pending = True
                        continue
                    if job.over:
                        continue
                    pending = True
                    if job.ready_to_finish():
                        return job, None
                    piece = job.take() if allowed else None
                    if piece is not None:
                        self.steering.started()
                        return job, piece
                if self.small:  # counted as a stream, as a piece is
                    if allowed:
                        self.steering.started()
                        return self.small.popleft()
                    pending = True
                if not pending:
                    return None
                if not allowed:
                    client.close()  # parked: a CDN that counts connections sees one less
                self.cond.wait(POLL)
        return None

    def _worker(self, index: int) -> None:
        client = Client(self.timeout)
        with self.cond:
            self.clients.append(client)
        bufs: list[memoryview] = []  # allocated with the first piece: a stream may find no work
        try:
            while (task := self._take(client)) is not None:
                if isinstance(task, SmallFile):
                    try:
                        self._fetch_small(client, task)
                    finally:
                        with self.cond:
                            self.steering.stopped()
                            self.cond.notify_all()
                    continue
                job, piece = task
                if piece is None:
                    job.finish(self.cancel)  # done, or planned anew: either way the job wakes the streams
                    continue
                try:
                    size = BUFFER_SIZE if index == 0 else self.small_buffers
                    bufs = bufs or [memoryview(bytearray(size)) for _ in range(BUFFERS)]
                    self._fetch_piece(client, job, piece, bufs)
                finally:
                    with self.cond:
                        self.steering.stopped()
                        self.cond.notify_all()
        except BaseException as exc:
            self._fail(exc)
        finally:
            client.close()
            with self.cond:
                self.live -= 1
                if self.live <= 0:
                    self.ended.set()

    def _fetch_piece(self, client: Client, job: Job, piece: Piece, bufs: list[memoryview]) -> None:
        """Fetch what `piece` lacks, retrying within bounds; always let go of the piece this stream holds."""
        fails = 0
        best = piece.done
        try:
            while not piece.complete:
                if self.cancel.is_set():
                    raise Cancelled()
                try:
                    held = attempt(client, job, piece, self.headers, partial(read_body, self, job=job, bufs=bufs))
                    if held is None:
                        return
                    piece = held  # another piece when the file became one stream from byte 0
                except Fatal as exc:
                    raise failures.hub_unreachable(self.endpoint, str(exc)) from None
                except Retry as exc:
                    if self._over_the_count(exc):
                        return  # the piece (and what it has) goes back, this stream parks
                    # An attempt that took the piece further than ever proves the link works: the budget restarts
                    # (as huggingface_hub does), so a long download over a flaky link is not cut short. Still
                    # bounded: each such attempt must push the high-water mark on by at least PROGRESS_RESET bytes
                    # (a server that ignores Range and resets every time cannot loop forever).
                    if piece.done >= best + PROGRESS_RESET:
                        fails = 0
                    best = max(best, piece.done)
                    fails += 1
                    retry.before_retry(exc, fails, self.retries, self.endpoint, job.rf.path, self.cancel)
        except BaseException as exc:
            self._fail(exc)  # before the piece is let go: no other stream may take it up again
            raise
        finally:
            job.release(piece)

    def _over_the_count(self, exc: Retry) -> bool:
        """Tell the controller of a failed attempt (an expired signed URL says nothing of the load); True when this
        stream is now over the count and must let go of its work and park."""
        with self.cond:
            wait = None if exc.retry_after is None else min(exc.retry_after, current().retry_after_cap)
            over = not (exc.fresh_url or exc.slow) and self.steering.trouble(exc.status, wait)
        if over and wait:
            retry.pause(wait, self.cancel)  # the server asked for quiet: the work it refused is not handed on before
        return over

    def _fetch_small(self, client: Client, item: SmallFile) -> None:
        """Fetch, verify and land a small file, retrying within the same bounds as a piece."""
        assert self.work_dir is not None and self.progress is not None
        fails = 0
        try:
            while item.result is None:
                self.check_cancel()
                try:
                    item.result = fetch_small(client, item.rf, self.headers, item.dest, self.work_dir, self.heard)
                except Fatal as exc:
                    raise failures.hub_unreachable(self.endpoint, str(exc)) from None
                except Retry as exc:
                    if self._over_the_count(exc):
                        with self.cond:
                            self.small.appendleft(item)  # for a stream the count allows
                        return
                    fails += 1
                    retry.before_retry(exc, fails, self.retries, self.endpoint, item.rf.path, self.cancel)
        except BaseException as exc:
            self._fail(exc)
            raise
        self.progress.advance(item.rf.path, item.rf.size)  # no bar of its own: the total moves on

    def fan_out(self, job: Job, rate: float) -> None:
        """The probe proved ranges work: let the other pieces start, over as many streams as help.

        Many streams help only when each connection is capped below the link (a CDN: 40-90 MB/s each).
        Where one stream alone already runs faster than FAST_STREAM (a mirror on the LAN, loopback), more
        streams only compete for the CPU and the page cache: measured on a 2-core machine over loopback,
        16 streams took 2.4 s for 500 MiB where one took 0.8 s. So a fast first stream stays alone."""
        job.fan_out(1 if rate >= FAST_STREAM else self.connections, rate)
        with self.cond:
            if job.rtt is not None:
                self.steering.round_trip(job.rtt)
            self.steering.fanned_out(rate if rate < FAST_STREAM else 0.0)

    def count(self, n: int) -> None:
        self.steering.count(n)

    def heard(self) -> None:
        self.silence.heard()

    def floor(self) -> float:
        """The rate below which an answer is cut (watch.Pace): settings.speed_limit, or a tenth of a stream's mean."""
        return max(current().speed_limit, FLOOR_SHARE * self.steering.per_stream)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()


def fetch_all(
    files: Sequence[RemoteFile],
    local_dir: Path,
    work_dir: Path,
    headers: Mapping[str, str],
    *,
    progress: Progress,
    endpoint: str,
    connections: int = DEFAULT_CONNECTIONS,
    retries: int = DOWNLOAD_RETRIES,
    timeout: float | None = None,
    usage: list[Usage] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> list[FileResult]:
    """Fetch `files` into `local_dir`, verified, biggest first; results in input order. `connections` is the
    ceiling of streams at once; `usage`, when given, gets how many were used (streams.Usage), even on failure;
    `say` prints a line (a long silence of the network).

    Raises a `failures.Failure` (integrity, hub unreachable, disk), `HttpRefused` for a 4xx the caller
    classifies; the first failure stops the other streams (partials stay for the next run). So does a
    KeyboardInterrupt, re-raised once the streams have stopped."""
    targets = [store.safe_dest(local_dir, rf.path) for rf in files]
    try:
        for folder in ("partial", "locks", "done"):
            (work_dir / folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise store.disk_failure(exc, work_dir, sum(rf.size for rf in files)) from None
    progress.plan(sum(rf.size for rf in files))
    store.small.sweep(work_dir)
    order = sorted(range(len(files)), key=lambda i: -files[i].size)
    if timeout is None:
        timeout = current().download_timeout
    cond = threading.Condition()  # the pool's and its jobs': each transition holds it and wakes the streams
    big = [i for i in order if not store.small.is_small(files[i].size)]
    small = [SmallFile(files[i], targets[i]) for i in order if store.small.is_small(files[i].size)]
    jobs = [Job(files[i], targets[i], work_dir, connections, progress, cond) for i in big]
    pool = _Pool(
        jobs, cond, headers, endpoint, connections, retries, timeout, threading.Event(),
        small=small, work_dir=work_dir, progress=progress, say=say,
    )
    try:
        pool.run()
    finally:
        if usage is not None:
            usage.append(pool.usage)
    # Durability: each big file was fsync'ed before its rename (and its folder after it); the small files only
    # now, all at once. What this returns is on disk for good, so the manifest written after it claims nothing
    # that a power cut could take back.
    store.settle([s.dest for s in small])
    by_path = {id(job.rf): job.result for job in jobs}
    by_path.update((id(s.rf), s.result) for s in small)
    results = [by_path[id(rf)] for rf in files]
    return [r for r in results if r is not None]

