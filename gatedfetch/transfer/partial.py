"""The bytes of one file on disk while it arrives: the partial, its piece record, and the move into place.

`work_dir/partial/<key>.part` holds the bytes, written with `os.pwrite` at their own offsets by as many
streams as the file has; `<key>.pieces` beside it records, per piece, how many bytes from the piece's
start are on disk. A stream updates its piece's counter (an 8-byte `pwrite`) right after each write
of data, so a kill -9 at any moment leaves a record that claims only bytes already in the file (the
page cache keeps both for the next run). A power cut may lose the last writes of both; the hash
check at the end then sends the file back for one fresh download (see job.py). A partial without
a record (an older version's, or one written by a single stream) counts as a prefix of its length.

The key is the expected hash (or a digest of url+size when the Hub gives none), so bytes of another
revision's content are never mixed in. Only a complete, verified file is fsync'ed and `os.replace`d
into place; then a small marker (see `write_marker`) lets a second process that waited on the lock
trust it without re-hashing.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import failures

_HEX_DIGEST = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_MAGIC = b"GFPIECE1"
_HEADER = struct.Struct("<8sQQ")  # magic, file size, number of pieces
_ENTRY = struct.Struct("<QQQ")  # start, end (exclusive), bytes done from start
_COUNTER = struct.Struct("<Q")
# The partial is fdatasync'ed in the background every FLUSH_EVERY bytes written, and the synced pages
# that are already hashed dropped from the page cache (see Flusher for why, with the measurements).
FLUSH_EVERY = 64 << 20


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


def content_key(sha256: str | None, blob_sha1: str | None, url: str, size: int) -> str:
    """The name of a file's partial and lock: its expected hash, else a digest of url and size."""
    for digest in (sha256, blob_sha1):
        if digest and _HEX_DIGEST.fullmatch(digest.lower()):
            return digest.lower()
    return "u" + hashlib.sha256(f"{url}\n{size}".encode()).hexdigest()[:40]


def disk_failure(exc: OSError, folder: Path, needed: int) -> failures.Failure:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = 0
        return failures.no_space(str(folder), needed, free)
    return failures.not_writable(str(folder), exc.strerror or type(exc).__name__)


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


def host_tag() -> str:
    """This machine's name, as it appears in the names of its partial files.

    On a folder shared by several machines each keeps and resumes its own partial: a lock alone does not
    keep two machines off one file there, since on some network file systems a lock can succeed on two
    machines at once (Lustre mounted with `localflock`; NFS without a working lock manager: see flock(2)).
    Verified files are still moved into place atomically, and two movers move identical bytes.
    """
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()).strip("-")[:64]
    return name or "host"


def partial_path(work_dir: Path, key: str) -> Path:
    """Where this machine keeps the partial of the content named `key` (its expected hash)."""
    return work_dir / "partial" / f"{key.lower()}.{host_tag()}.part"


def lock_path(work_dir: Path, key: str) -> Path:
    """The lock a run holds while it fetches, or copies in, the content named `key` (one per content)."""
    return work_dir / "locks" / f"{key.lower()}.lock"


# statfs(2)'s f_type of the file systems whose locks every process that sees the folder shares: one kernel
# serves them, so two containers on one disk (new host names, same kernel) cannot both hold a file's lock.
# Values from linux/magic.h (ZFS: its own SPA magic). Network file systems (NFS 0x6969, Lustre 0x0BD00BD0,
# GPFS 0x47504653, CIFS 0xFF534D42, SMB2 0xFE534D42, FUSE 0x65735546, ...) and anything unknown keep one
# partial per host, as their locks may not reach every machine (see host_tag).
LOCAL_FS = {
    0xEF53: "ext2/3/4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x858458F6: "ramfs",
    0x794C7630: "overlay",
    0x2FC12FC1: "zfs",
    0xF2F52010: "f2fs",
}


def fs_type(folder: Path) -> int | None:
    """statfs(2)'s f_type for the file system holding `folder` (its nearest existing parent); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    there = folder
    while not there.exists() and there != there.parent:
        there = there.parent
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(256)  # struct statfs; f_type (a C long) comes first
        if libc.statfs(os.fsencode(there), buf) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF


def locks_span_hosts(folder: Path) -> bool:
    """Whether a lock taken in `folder` keeps out every process that can write there, whatever its host name."""
    return fs_type(folder) in LOCAL_FS


def _candidates(work_dir: Path, key: str) -> list[Path]:
    """Partials of the content `key` that this machine may take over: an older version's without a host name
    always; other host names' where locks span hosts (a container restarted with a new name, same disk)."""
    folder = work_dir / "partial"
    legacy = folder / f"{key.lower()}.part"
    found = [legacy] if legacy.exists() else []
    if locks_span_hosts(work_dir):
        own = partial_path(work_dir, key)
        found += [p for p in folder.glob(f"{key.lower()}.*.part") if p != own]
    return found


def _usable(part: Path, size: int) -> int:
    """Bytes of the partial `part` a run may keep: those its piece record vouches for."""
    try:
        have = part.stat().st_size
    except OSError:
        return 0
    if have > size:
        return 0
    ranges = read_record(part.with_suffix(".pieces"), size)
    if ranges is None:
        return have
    return sum(min(b, have) - a for a, b in ranges if a < have)


def adopt(work_dir: Path, key: str, size: int) -> None:
    """Call with the content's lock held: the fullest partial this machine may take over becomes its own, and
    the other candidates go (they hold nothing the kept one needs, and nothing else would ever remove them)."""
    others = _candidates(work_dir, key)
    if not others:
        return
    own = partial_path(work_dir, key)
    best = max([own, *others], key=lambda p: _usable(p, size))
    if best != own:
        if best.with_suffix(".pieces").exists():
            os.replace(best.with_suffix(".pieces"), own.with_suffix(".pieces"))
        else:
            own.with_suffix(".pieces").unlink(missing_ok=True)
        os.replace(best, own)
    for p in others:
        if p != best:
            p.with_suffix(".pieces").unlink(missing_ok=True)
            p.unlink(missing_ok=True)


def bytes_on_disk(work_dir: Path, key: str, size: int) -> int:
    """Bytes of the partial this machine would resume for the content named `key` (its own, or one it would
    adopt): for the disk check and the benchmark."""
    return max(_usable(p, size) for p in [partial_path(work_dir, key), *_candidates(work_dir, key)])


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
        folder = dest.parent
        try:
            os.fsync(self.fd)
            self.close()
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, dest)
            self.record.unlink(missing_ok=True)
        except OSError as exc:
            raise disk_failure(exc, folder, 0) from None
        fsync_dir(folder)

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


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: some file systems cannot sync a folder)."""
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


_datasync = getattr(os, "fdatasync", os.fsync)


class Flusher:
    """`fdatasync`s a partial in a background thread every FLUSH_EVERY bytes written.

    Measured on a 2-core VM (1 GiB, ext4): writing 1 GiB then one fsync took 3-5 s, because dirty
    pages pile up and fresh page-cache pages are slow to get; with a background fdatasync every
    64 MiB the same writes took 0.5-0.7 s in all, and the final fsync ~0. Dropping synced pages
    (POSIX_FADV_DONTNEED never drops dirty ones) recycles the same few pages: a whole 1 GiB fetch went
    from 2.3-2.6 s (fdatasync only) to 1.2-1.5 s. Only pages below `hashed()` are dropped: the hash
    reads the others back from the page cache. Side effects, both wanted: a partial is durable as it
    grows, and a 3.6 GB download does not evict everyone else's page cache."""

    def __init__(self, fd: int, hashed: Callable[[], int]) -> None:
        self._fd = fd
        self._hashed = hashed  # a callable giving the hashed prefix's length
        self._wake = threading.Event()
        self._stop = False
        self._unflushed = 0
        self._count_lock = threading.Lock()
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
                upto = self._hashed()
                _datasync(self._fd)
                if upto and hasattr(os, "posix_fadvise"):  # Linux; macOS has neither call
                    os.posix_fadvise(self._fd, 0, upto, os.POSIX_FADV_DONTNEED)
            except OSError as exc:
                self.error = exc
                return

    def wrote(self, n: int) -> None:
        if self.error is not None:
            raise self.error
        with self._count_lock:
            self._unflushed += n
            if self._unflushed < FLUSH_EVERY:
                return
            self._unflushed = 0
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()


# Completion protocol (two processes on one folder both end with good files, one transfer). The lock
# serialises them; the one that waited must then tell "the other just completed this file" from "dest
# is some older file". Re-hashing dest would cost seconds per GB, so the finisher, right after
# os.replace, atomically writes a small marker `done/<key>-<path digest>.json` holding dest's (device,
# inode, size, mtime_ns) and its hash. The next holder of the lock trusts dest only if its stat still
# matches: any later change to dest (another revision replacing it, an edit) changes the inode or
# mtime and voids the marker. Losing the marker only means a re-download.


def marker_path(work_dir: Path, key: str, path: str) -> Path:
    return work_dir / "done" / f"{key}-{hashlib.sha256(path.encode()).hexdigest()[:16]}.json"


def write_marker(
    marker: Path, path: str, dest: Path, sha256: str, verified: bool, source: str = ""
) -> str | None:
    """Record that `dest` holds these verified bytes, and where they came from (download, partial, hf-cache, …)
    for a run that finds them done; what went wrong, when the marker could not be written (the file itself is
    in place and good: a run that waited on its lock will only fetch it once more)."""
    try:
        st = dest.stat()
        doc = {
            "path": path,
            "size": st.st_size,
            "sha256": sha256,
            "verified": verified,
            "source": source,
            "dev": st.st_dev,
            "ino": st.st_ino,
            "mtime_ns": st.st_mtime_ns,
        }
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, marker)
    except OSError as exc:
        return (
            f"{path}: could not record its completion in {marker.parent} ({exc.strerror or exc}); the file is in "
            "place and verified, but a run waiting for it at the same time may fetch it again"
        )
    return None


def read_marker(marker: Path, path: str, size: int, dest: Path) -> tuple[str, bool, str] | None:
    """(sha256, verified, source) of `dest` when the marker still describes it, else None (source: "" when
    the marker predates it)."""
    try:
        doc = json.loads(marker.read_text())
        st = dest.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    same = (
        doc.get("path") == path
        and doc.get("size") == size == st.st_size
        and doc.get("dev") == st.st_dev
        and doc.get("ino") == st.st_ino
        and doc.get("mtime_ns") == st.st_mtime_ns
        and isinstance(doc.get("sha256"), str)
    )
    source = doc.get("source")
    return (doc["sha256"], bool(doc.get("verified")), source if isinstance(source, str) else "") if same else None
