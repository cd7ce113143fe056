"""One file being fetched: its lock, its partial and pieces, the hash that follows them, and its state.

A file goes `wait` (for its lock) → `probe` (one piece out, to learn whether the server honours Range)
→ `ranged` (pieces handed to any stream) or `single` (one stream, one gap at a time) → `done`. The
pool calls every method under its own lock except `wrote` (the streams' hot path) and `finish`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from .. import failures, store
from ..digest import Digest
from ..progress import Progress
from ..store import Flusher, Partial, Piece
from .segments import PrefixHasher, piece_size, plan


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
    notes: tuple[str, ...] = ()  # warnings for the user (the file is good)
    source: str = ""  # when another run put the file in place meanwhile: where it got the bytes (else "")


class Cancelled(Exception):
    """The transfer was stopped because another file failed or the user interrupted."""


def content_key(rf: RemoteFile) -> str:
    return store.content_key(rf.sha256, rf.blob_sha1, rf.url, rf.size)


class Job:

    def __init__(self, rf: RemoteFile, dest: Path, work_dir: Path, connections: int, progress: Progress) -> None:
        self.rf = rf
        self.dest = dest
        self.key = content_key(rf)
        self.work_dir = work_dir
        self.cut = piece_size(rf.size, connections)
        self.progress = progress
        self.marker = store.marker_path(work_dir, self.key, rf.path)
        self.lock = store.content_lock(work_dir, self.key)
        self.state = "wait"  # wait (for the lock) → probe | single | ranged → done
        self.partial = Partial(store.partial_path(work_dir, self.key), rf.size)
        self.pieces: list[Piece] = []
        self.inflight: set[int] = set()  # ids of pieces a stream holds
        self.max_streams = 1 << 30  # how many of them at once (set when the probe's speed is known)
        self.first_open = 0  # pieces before this index are complete
        self.hasher: PrefixHasher | None = None
        self.flusher: Flusher | None = None
        self.finishing = False
        self.fresh_retry_done = False
        self.restarted_416 = False
        self.resumed_from = 0
        self.fetched = 0
        self.result: FileResult | None = None
        self._wlock = threading.Lock()

    # -- start and stop ------------------------------------------------------------------------

    def activate(self) -> bool:
        """Take the lock if free; then either the file is already complete or its pieces are planned."""
        if not store.try_lock(self.lock, self.work_dir):
            return False
        done = store.read_marker(self.marker, self.rf.path, self.rf.size, self.dest)
        if done is not None:  # completed by another process while we waited, or by an earlier run
            self.progress.start_file(self.rf.path, self.rf.size, self.rf.size)
            self._done(FileResult(self.rf.path, self.rf.size, done[0], done[1], 0, 0, source=done[2] or "download"))
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
        self.pieces = plan(self.rf.size, done, 0 if single else self.cut)
        self.partial.plan(self.pieces)
        self.inflight.clear()
        self.first_open = 0
        self.finishing = False
        open_pieces = sum(1 for p in self.pieces if not p.complete)
        self.state = "probe" if self.cut and not single and open_pieces > 1 else "single"
        if self.hasher is not None:
            self.hasher.stop()
        digest = Digest(self.rf.size, self.rf.sha256, self.rf.blob_sha1)
        self.hasher = PrefixHasher(self.partial.fd, self.rf.size, digest)
        if self.flusher is None and self.rf.size > store.FLUSH_EVERY:
            self.flusher = Flusher(self.partial.fd, self._hashed)
        self._advance_prefix()

    @property
    def most_pieces(self) -> int:
        """How many streams are worth starting for this file: the pieces a plan cuts it into, plus one."""
        return 1 if not self.cut else -(-self.rf.size // self.cut) + 1

    def _hashed(self) -> int:
        hasher = self.hasher
        return hasher.hashed if hasher is not None else 0

    def one_stream(self) -> None:
        """Keep the bytes on disk; fetch each gap left in one request (the server's ranges can't be trusted)."""
        with self._wlock:
            done = store.merge([(p.start, p.start + p.done) for p in self.pieces])
        self._plan(done, single=True)

    def restart(self, single: bool) -> None:
        """Throw the partial's bytes away and plan the file anew (no other piece may be in flight)."""
        self.partial.truncate()
        with self._wlock:
            have = sum(p.done for p in self.pieces)
        self.progress.advance(self.rf.path, -have)
        self.resumed_from = 0
        self._plan([], single)

    def _done(self, result: FileResult) -> None:
        self.result = result
        self.state = "done"
        self.close()

    def close(self) -> None:
        """Stop the helpers, close the partial (kept for the next run unless discarded), release the lock."""
        if self.flusher is not None:
            self.flusher.stop()  # before the fd is closed
            self.flusher = None
        if self.hasher is not None:
            self.hasher.stop()
            self.hasher = None
        if self.state not in ("wait", "done") and not any(p.done for p in self.pieces):
            self.partial.discard()  # not a byte came (another file failed first): nothing worth keeping
        else:
            self.partial.close()
        if self.lock.is_locked:
            self.lock.release()
        if self.state != "wait":
            self.progress.end_file(self.rf.path)
        if self.state != "done":
            self.state = "closed"

    # -- pieces --------------------------------------------------------------------------------

    def take(self) -> Piece | None:
        if self.state not in ("probe", "single", "ranged"):
            return None
        if self.state in ("probe", "single") and self.inflight or len(self.inflight) >= self.max_streams:
            return None
        for p in self.pieces[self.first_open :]:
            if not p.complete and id(p) not in self.inflight:
                self.inflight.add(id(p))
                return p
        return None

    def ready_to_finish(self) -> bool:
        if self.state in ("probe", "single", "ranged") and not self.finishing and not self.inflight:
            if all(p.complete for p in self.pieces):
                self.finishing = True
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
        """Verify the complete partial and move it into place. False: it was planned anew (fetch again)."""
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
            if self.resumed_from and not self.fresh_retry_done:
                # The bad bytes may be an earlier run's (a crash or power cut can leave garbage where
                # the record said data was): fetch it once more from scratch before blaming the server.
                self.fresh_retry_done = True
                self.restart(single=False)
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
