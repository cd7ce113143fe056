"""Partials per host: where this machine keeps the partial of a content, and which other partials of it (an
older version's, another host name's on a disk whose locks every process shares) it may take over."""

from __future__ import annotations

import ctypes
import os
import re
import socket
import sys
from pathlib import Path

from .record import read_record


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


def copy_path(work_dir: Path, key: str) -> Path:
    """The temporary file a copy of the content `key` is made in, beside the partials (see local_bytes.py)."""
    return partial_path(work_dir, key).with_suffix(".copy")


def drop_partial(work_dir: Path, key: str) -> None:
    """Remove this machine's partial of `key` and its record (the content came in another way)."""
    own = partial_path(work_dir, key)
    own.unlink(missing_ok=True)
    own.with_suffix(".pieces").unlink(missing_ok=True)


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
