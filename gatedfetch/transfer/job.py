"""One file being fetched: its lock, its partial and pieces, the hash that follows them, and its state.

A file goes WAIT (for its lock) → PROBE (one piece out, to learn whether the server honours Range)
→ RANGED (pieces handed to any stream) or SINGLE (one stream, one gap at a time) → DONE; or CLOSED when
the run stops first. Every transition is a method of `Job` (the table `_NEXT` says which are legal; one
from a wrong state raises `WrongState`), and the pool only calls them: it never writes a job's fields.

Locking: each transition holds the job's condition and notifies it. The pool passes its own (so that a
stream waiting for work wakes when any job changes); it is reentrant (an RLock, Condition's default), as
the pool already holds it when it asks `activate`, `take` and `ready_to_finish`. The streams' hot path
(`offer`, `wrote`) takes only a small lock of its own for the pieces' counters.
"""

from __future__ import annotations

import threading
from enum import Enum
from pathlib import Path

from .. import failures, store
from ..digest import Digest
from ..progress import Progress
from ..settings import current
from ..store import Flusher, Partial, Piece
from .location import Location
from .records import Cancelled, FileResult, RemoteFile, content_key
from .segments import PrefixHasher, link_piece, piece_size, plan, recut


class State(Enum):
    WAIT = "wait"  # for the content's lock
    PROBE = "probe"  # one piece out: does the server honour Range, how fast is one stream
    SINGLE = "single"  # one stream, one gap at a time
    RANGED = "ranged"  # pieces handed to any stream, up to the job's count at once
    DONE = "done"  # verified and in place (or found so)
    CLOSED = "closed"  # stopped before the end: the partial stays for the next run


_RUNNING = (State.PROBE, State.SINGLE, State.RANGED)
# The one place the legal transitions are written: a running file may be planned anew from any running state
# (probe or single again), a probe fans out or becomes one stream, and every live state may end.
_NEXT: dict[State, frozenset[State]] = {
    State.WAIT: frozenset({State.PROBE, State.SINGLE, State.DONE, State.CLOSED}),
    State.PROBE: frozenset({State.PROBE, State.SINGLE, State.RANGED, State.DONE, State.CLOSED}),
    State.SINGLE: frozenset({State.PROBE, State.SINGLE, State.DONE, State.CLOSED}),
    State.RANGED: frozenset({State.PROBE, State.SINGLE, State.DONE, State.CLOSED}),
    State.DONE: frozenset(),
    State.CLOSED: frozenset(),
}


class WrongState(RuntimeError):
    """A transition asked of a job in a state it cannot be taken from (a bug in the caller)."""


class Job:
    """One file's transfer, from waiting for its lock to verified in place."""

    def __init__(
        self, rf: RemoteFile, dest: Path, work_dir: Path, connections: int, progress: Progress,
        cond: threading.Condition | None = None,
    ) -> None:
        self.rf = rf
        self.dest = dest
        self.key = content_key(rf)
        self.work_dir = work_dir
        self.cut = piece_size(rf.size, connections)
        self.progress = progress
        self.location = Location(rf.url, current().url_margin)  # one /resolve for every piece, while it lasts
        self.rtt: float | None = None  # the shortest wait for an answer's headers seen: the link's round trip
        self.marker = store.marker_path(work_dir, self.key, rf.path)
        self.lock = store.content_lock(work_dir, self.key)
        self.partial = Partial(store.partial_path(work_dir, self.key), rf.size)
        self.pieces: list[Piece] = []
        self.inflight: set[int] = set()  # ids of pieces a stream holds
        self.first_open = 0  # pieces before this index are complete
        self.hasher: PrefixHasher | None = None
        self.flusher: Flusher | None = None
        self.resumed_from = 0
        self.fetched = 0
        self.result: FileResult | None = None
        self._state = State.WAIT
        self._streams = 1 << 30  # how many pieces at once (set when the probe's speed is known)
        self._finishing = False
        self._fresh_retry_done = False
        self._restarted_416 = False
        self._cond = cond if cond is not None else threading.Condition()
        self._wlock = threading.Lock()

    # -- the state, read ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def waiting(self) -> bool:
        return self._state is State.WAIT

    @property
    def probing(self) -> bool:
        return self._state is State.PROBE

    @property
    def ranged(self) -> bool:
        return self._state is State.RANGED

    @property
    def over(self) -> bool:
        return self._state in (State.DONE, State.CLOSED)

    def _go(self, to: State) -> None:
        """The one writer of the state (the condition held)."""
        if to not in _NEXT[self._state]:
            raise WrongState(f"{self.rf.path}: no way from {self._state.value} to {to.value}")
        self._state = to

    def _need(self, what: str, *states: State) -> None:
        if self._state not in states:
            raise WrongState(f"{self.rf.path}: cannot {what} while {self._state.value}")

    # -- start and stop ------------------------------------------------------------------------

    def activate(self) -> bool:
        """WAIT → DONE | PROBE | SINGLE: take the lock if free (False: still waiting); then either the file is
        already complete (a marker) or its pieces are planned."""
        with self._cond:
            self._need("take the lock", State.WAIT)
            if not store.try_lock(self.lock, self.work_dir):
                return False
            done = store.read_marker(self.marker, self.rf.path, self.rf.size, self.dest)
            if done is not None:  # completed by another process while we waited, or by an earlier run
                self.progress.start_file(self.rf.path, self.rf.size, self.rf.size)
                result = FileResult(self.rf.path, self.rf.size, done[0], done[1], 0, 0, source=done[2] or "download")
                self._done(result)
                return True
            try:
                store.adopt(self.work_dir, self.key, self.rf.size)
            except OSError as exc:
                raise store.disk_failure(exc, self.work_dir / "partial", 0) from None
            ranges = self.partial.open()
            self.resumed_from = sum(b - a for a, b in ranges)
            self.progress.start_file(self.rf.path, self.rf.size, self.resumed_from)
            self._plan(ranges, single=False)
            return True

    def _plan(self, done: list[tuple[int, int]], single: bool) -> None:
        """→ PROBE | SINGLE: pieces that tile the file around the ranges `done` (the condition held)."""
        self.pieces = plan(self.rf.size, done, 0 if single else self.cut)
        self.partial.plan(self.pieces)
        self.inflight.clear()
        self.first_open = 0
        self._finishing = False
        open_pieces = sum(1 for p in self.pieces if not p.complete)
        self._go(State.PROBE if self.cut and not single and open_pieces > 1 else State.SINGLE)
        if self.hasher is not None:
            self.hasher.stop()
        digest = Digest(self.rf.size, self.rf.sha256, self.rf.blob_sha1)
        self.hasher = PrefixHasher(self.partial.fd, self.rf.size, digest)
        if self.flusher is None and self.rf.size > store.FLUSH_EVERY:
            self.flusher = Flusher(self.partial.fd, self._hashed)
        self._advance_prefix()
        self._cond.notify_all()

    @property
    def most_pieces(self) -> int:
        """How many streams are worth starting for this file: the pieces a plan cuts it into, plus one."""
        return 1 if not self.cut else -(-self.rf.size // self.cut) + 1

    def _hashed(self) -> int:
        hasher = self.hasher
        return hasher.hashed if hasher is not None else 0

    def fan_out(self, streams: int, rate: float = 0.0) -> None:
        """PROBE → RANGED: the probe proved ranges work; up to `streams` pieces at once from now on. The pieces no
        stream has touched are cut anew for the link the probe saw (`rate` bytes/s on one stream, the round trip
        `rtt`): longer where each request waits long (segments.link_piece)."""
        with self._cond:
            self._need("fan out", State.PROBE)
            self._go(State.RANGED)
            self._streams = max(1, streams)
            cut = link_piece(self.cut, self.rf.size, rate, self.rtt)
            if cut > self.cut:
                self._recut(cut)
            self._cond.notify_all()

    def widen(self, streams: int) -> None:
        """A file left to one fast stream whose rate fell: up to `streams` pieces at once again."""
        with self._cond:
            if self._state is State.RANGED and self._streams < streams:
                self._streams = streams
                self._cond.notify_all()

    @property
    def narrow(self) -> bool:
        """Ranged, but left to one stream (its probe was fast)."""
        return self._state is State.RANGED and self._streams == 1

    def _recut(self, cut: int) -> None:
        """Cut the untouched tail of the plan (no byte, no stream on any of its pieces) in `cut`-long pieces."""
        with self._wlock:
            pieces = recut(self.pieces, self.inflight, self.rf.size, cut)
            if pieces is None:
                return
            self.pieces, self.cut = pieces, cut
        self.partial.plan(self.pieces)

    def waited(self, seconds: float) -> None:
        """An answer's headers came `seconds` after its request (a round trip and the server's think time)."""
        with self._wlock:
            self.rtt = seconds if self.rtt is None else min(self.rtt, seconds)

    def one_stream(self) -> None:
        """PROBE → SINGLE: keep the bytes on disk; fetch each gap left in one request (the server's ranges
        can't be trusted: no Content-Length)."""
        with self._cond:
            self._need("become one stream", State.PROBE)
            with self._wlock:
                done = store.merge([(p.start, p.start + p.done) for p in self.pieces])
            self._plan(done, single=True)

    def restart_single(self, hold: bool = False) -> Piece:
        """PROBE | SINGLE → SINGLE from byte 0: the server ignored the Range, or answered another one. The first
        piece is returned; with `hold`, the caller (the stream that got the whole body) holds it."""
        with self._cond:
            self._need("start over as one stream", State.PROBE, State.SINGLE)
            self._restart(single=True)
            piece = self.pieces[0]
            if hold:
                self.inflight.add(id(piece))
            return piece

    def on_416(self) -> bool:
        """A 416 to a resumed request of a probing or single file: start over from byte 0, once (True); False
        when that was done already or the file is ranged (the 416 is then the server's refusal)."""
        with self._cond:
            if self._state is State.RANGED or self._restarted_416:
                return False
            self._restarted_416 = True
            self.restart_single()
            return True

    def _restart(self, single: bool) -> None:
        """Throw the partial's bytes away and plan the file anew (no other piece may be in flight)."""
        self.partial.truncate()
        with self._wlock:
            have = sum(p.done for p in self.pieces)
        self.progress.advance(self.rf.path, -have)
        self.resumed_from = 0
        self._plan([], single)

    def _done(self, result: FileResult) -> None:
        """→ DONE (the condition held)."""
        self._go(State.DONE)
        self.result = result
        self._let_go(started=True, discard=False)
        self._cond.notify_all()

    def close(self) -> None:
        """→ CLOSED, unless over already: stop the helpers, close the partial (kept for the next run unless not a
        byte came), release the lock."""
        with self._cond:
            if self.over:
                return
            was = self._state
            self._go(State.CLOSED)
            started = was is not State.WAIT
            self._let_go(started=started, discard=started and not any(p.done for p in self.pieces))
            self._cond.notify_all()

    def _let_go(self, started: bool, discard: bool) -> None:
        if self.flusher is not None:
            self.flusher.stop()  # before the fd is closed
            self.flusher = None
        if self.hasher is not None:
            self.hasher.stop()
            self.hasher = None
        if discard:
            self.partial.discard()  # not a byte came (another file failed first): nothing worth keeping
        else:
            self.partial.close()
        if self.lock.is_locked:
            self.lock.release()
        if started:
            self.progress.end_file(self.rf.path)

    # -- pieces --------------------------------------------------------------------------------

    def take(self) -> Piece | None:
        """The next piece for a stream to fetch (now held by it), or None: none open, or enough streams on it."""
        with self._cond:
            if self._state not in _RUNNING:
                return None
            if self._state is not State.RANGED and self.inflight or len(self.inflight) >= self._streams:
                return None
            for p in self.pieces[self.first_open :]:
                if not p.complete and id(p) not in self.inflight:
                    self.inflight.add(id(p))
                    return p
            return None

    def release(self, piece: Piece) -> None:
        """The stream that held `piece` lets it go (complete, or to be taken up again)."""
        with self._cond:
            self.inflight.discard(id(piece))
            self._cond.notify_all()

    def ready_to_finish(self) -> bool:
        """True once, when every piece is on disk and none is held: the caller then calls `finish`."""
        with self._cond:
            if self._state in _RUNNING and not self._finishing and not self.inflight:
                if all(p.complete for p in self.pieces):
                    self._finishing = True
                    return True
            return False

    def offer(self, pos: int, data: memoryview) -> None:
        """Bytes just written at `pos`: hashed from this buffer when they extend the hashed prefix."""
        hasher = self.hasher
        if hasher is not None:
            hasher.offer(pos, data)

    def wrote(self, piece: Piece, n: int) -> None:
        """`n` more bytes of `piece` are on disk: record them, count them, feed the hash."""
        with self._wlock:
            piece.done += n
            self.fetched += n
        self.partial.note(piece)
        self.progress.advance(self.rf.path, n)
        self._advance_prefix()
        if self.flusher is not None:
            try:
                self.flusher.wrote(n)
            except OSError as exc:
                raise store.disk_failure(exc, self.partial.path.parent, self.rf.size) from None

    def _advance_prefix(self) -> None:
        with self._wlock:
            i = self.first_open
            while i < len(self.pieces) and self.pieces[i].complete:
                i += 1
            self.first_open = i
            prefix = self.rf.size if i >= len(self.pieces) else self.pieces[i].start + self.pieces[i].done
            hasher = self.hasher
        if hasher is not None:
            hasher.reach(prefix)

    # -- the end -------------------------------------------------------------------------------

    def finish(self, cancel: threading.Event) -> bool:
        """→ DONE: verify the complete partial and move it into place. False: it was planned anew (→ PROBE |
        SINGLE: fetch again). The hash is awaited and the file moved without the condition held."""
        hasher = self.hasher
        assert hasher is not None
        hasher.wait(cancel)
        if cancel.is_set():
            raise Cancelled()
        if hasher.error is not None:
            raise store.disk_failure(hasher.error, self.partial.path.parent, self.rf.size)
        got = hasher.digest.sha256.hexdigest()
        mismatch = hasher.digest.mismatch()
        if mismatch is not None:
            if self.resumed_from and not self._fresh_retry_done:
                # The bad bytes may be an earlier run's (a crash or power cut can leave garbage where
                # the record said data was): fetch it once more from scratch before blaming the server.
                with self._cond:
                    self._need("start over", *_RUNNING)
                    self._fresh_retry_done = True
                    self._restart(single=False)
                return False
            raise self.integrity(failures.hash_mismatch(self.rf.path, *mismatch))
        verified = hasher.digest.checked
        if self.flusher is not None:
            self.flusher.stop()
            self.flusher = None
        hasher.stop()
        self.hasher = None
        self.partial.finish(self.dest)
        source = "partial" if self.resumed_from else "download"
        note = store.write_marker(self.marker, self.rf.path, self.dest, got, verified, source)
        notes = (note,) if note else ()
        with self._cond:
            self._done(FileResult(self.rf.path, self.rf.size, got, verified, self.fetched, self.resumed_from, notes))
        return True

    def integrity(self, failure: failures.Failure) -> failures.Failure:
        """The bytes are not the expected ones: they never reach dest and the partial goes."""
        if self.hasher is not None:
            self.hasher.stop()
            self.hasher = None
        if self.flusher is not None:
            self.flusher.stop()
            self.flusher = None
        self.partial.discard()
        return failure
