"""One file's partial and its piece record, open for writing by many streams at once.

`<key>.<host>.part` holds the bytes, written with `os.pwrite` at their own offsets by as many streams as the
file has; `<key>.<host>.pieces` beside it records, per piece, how many bytes from the piece's start are on
disk. A stream updates its piece's counter (an 8-byte `pwrite`) right after each write of data, so a kill -9
at any moment leaves a record that claims only bytes already in the file (the page cache keeps both for the
next run). A power cut may lose the last writes of both; the hash check at the end then sends the file back
for one fresh download (see transfer/job.py). A partial without a record (an older version's, or one written
by a single stream) counts as a prefix of its length.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from .durable import move_into_place
from .names import disk_failure

_MAGIC = b"GFPIECE1"
_HEADER = struct.Struct("<8sQQ")  # magic, file size, number of pieces
_ENTRY = struct.Struct("<QQQ")  # start, end (exclusive), bytes done from start
_COUNTER = struct.Struct("<Q")


@dataclass
class Piece:
    start: int
    end: int  # exclusive
    done: int = 0  # bytes on disk from `start`
    slot: int = -1  # index of its counter in the record

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def complete(self) -> bool:
        return self.done >= self.length


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def read_record(record: Path, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges a record says are on disk, merged; None when there is no usable record."""
    try:
        data = record.read_bytes()
        magic, rec_size, count = _HEADER.unpack_from(data, 0)
    except (OSError, struct.error):
        return None
    if magic != _MAGIC or rec_size != size or len(data) < _HEADER.size + count * _ENTRY.size:
        return None
    ranges = []
    for i in range(count):
        start, end, done = _ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)
        if not start <= end <= size:
            return None
        ranges.append((start, start + min(done, end - start)))
    return merge(ranges)


class Partial:
    """One file's partial and piece record, open for writing by many streams at once."""

    def __init__(self, part: Path, size: int) -> None:
        self.path = part
        self.record = part.with_suffix(".pieces")
        self.size = size
        self.fd = -1
        self._rec_fd = -1
        self._lock = threading.Lock()

    def open(self) -> list[tuple[int, int]]:
        """Open (or create) the partial; the byte ranges already on disk from an earlier run."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            have = os.fstat(self.fd).st_size
        except OSError as exc:
            raise disk_failure(exc, self.path.parent, self.size) from None
        if have > self.size:  # not this content: discard
            self.truncate()
            return []
        ranges = read_record(self.record, self.size)
        if ranges is None:
            return [(0, have)] if have else []
        # A range beyond the file's end was never written (the record outlived a truncation).
        return merge([(a, min(b, have)) for a, b in ranges if a < have])

    def plan(self, pieces: list[Piece]) -> None:
        """Write a new record for `pieces` (atomically) and keep it open for the counters."""
        data = bytearray(_HEADER.pack(_MAGIC, self.size, len(pieces)))
        for i, p in enumerate(pieces):
            p.slot = i
            data += _ENTRY.pack(p.start, p.end, p.done)
        tmp = self.record.with_name(f"{self.record.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(bytes(data))
            os.replace(tmp, self.record)
            rec_fd = os.open(self.record, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise disk_failure(exc, self.path.parent, self.size) from None
        with self._lock:
            old, self._rec_fd = self._rec_fd, rec_fd
        if old >= 0:
            os.close(old)

    def write(self, offset: int, data: memoryview) -> None:
        """Write `data` at `offset`. ENOSPC keeps the partial: every byte in it is good, the next run resumes."""
        done = 0
        try:
            while done < len(data):
                done += os.pwrite(self.fd, data[done:], offset + done)
        except OSError as exc:
            raise disk_failure(exc, self.path.parent, self.size - offset) from None

    def note(self, piece: Piece) -> None:
        """Record that `piece.done` bytes of `piece` are on disk (called right after the write)."""
        with self._lock:
            fd = self._rec_fd
            if fd >= 0 and piece.slot >= 0:
                try:
                    os.pwrite(fd, _COUNTER.pack(piece.done), _HEADER.size + piece.slot * _ENTRY.size + 16)
                except OSError as exc:
                    raise disk_failure(exc, self.path.parent, self.size) from None

    def truncate(self) -> None:
        """Throw every byte away (a server that ignores Range, a bad resumed partial)."""
        try:
            os.ftruncate(self.fd, 0)
            self.record.unlink(missing_ok=True)
        except OSError as exc:
            raise disk_failure(exc, self.path.parent, self.size) from None

    def finish(self, dest: Path) -> None:
        """fsync the complete, verified partial and move it to `dest` atomically."""
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise disk_failure(exc, dest.parent, 0) from None
        self.close()
        move_into_place(self.path, dest)
        try:
            self.record.unlink(missing_ok=True)
        except OSError as exc:
            raise disk_failure(exc, dest.parent, 0) from None

    def discard(self) -> None:
        """The bytes are not the expected ones: they never reach dest, and the partial goes."""
        self.close()
        for p in (self.path, self.record):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        with self._lock:
            fds, self.fd, self._rec_fd = (self.fd, self._rec_fd), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
