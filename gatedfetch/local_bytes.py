"""Bytes already on disk brought to a temporary file, hashed on the way: a copy (a reflink where the
filesystem shares extents), or a hard link to the real file. The caller verifies the digest and moves the
temporary file into place; nothing here writes to the source."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from .hub_client import RepoFile
from .transfer import partial
from .transfer.segments import Digest

CHUNK = 1 << 20
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int); btrfs, XFS and bcachefs share extents on request


class SourceError(Exception):
    """The candidate could not be read (its disk, its permissions): skip it, download instead."""


def device(folder: Path) -> int:
    try:
        return folder.stat().st_dev
    except OSError:
        return -1


def link_verified(f: RepoFile, real: Path, before: os.stat_result, tmp: Path) -> tuple[Digest | None, str]:
    """Hash the regular file `real`, then hard-link it at `tmp`; (digest, "") when `tmp` is that file, with
    the same inode and stat as when it was hashed; (None, "") when it changed meanwhile. When the link cannot
    be made, or what it made is not that file, the bytes are copied instead: (digest, why not linked)."""
    digest = Digest(f.size, f.sha256, f.blob_sha1)
    try:
        with open(real, "rb", buffering=0) as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise SourceError(exc.strerror or type(exc).__name__) from None
    try:
        os.link(real, tmp, follow_symlinks=False)
        after = tmp.lstat()
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            tmp.unlink(missing_ok=True)
            return copy_verified(f, real, tmp), f"no hard link allowed here: {exc.strerror or exc}"
        raise SourceError(exc.strerror or type(exc).__name__) from None
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        tmp.unlink(missing_ok=True)  # a symlink swapped in under us, say: never land a pointer in the target
        return copy_verified(f, real, tmp), "the link did not land on the file itself"
    same = (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    return (digest if same else None), ""


def copy_verified(f: RepoFile, cand: Path, tmp: Path) -> Digest:
    """Copy `cand` to `tmp` and hash it on the way: a reflink (shared extents, no bytes copied) where the
    filesystem offers one, then the hash reads the clone; else one read-hash-write pass. fsync'ed."""
    digest = Digest(f.size, f.sha256, f.blob_sha1)
    try:
        src = os.open(cand, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SourceError(exc.strerror or type(exc).__name__) from None
    try:
        try:
            out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise partial.disk_failure(exc, tmp.parent, f.size) from None
        try:
            if reflink(src, out):
                hash_fd(out, digest)
            else:
                copy_fd(src, out, digest, tmp.parent, f.size)
            os.fsync(out)
        except OSError as exc:
            raise partial.disk_failure(exc, tmp.parent, f.size) from None
        finally:
            os.close(out)
    finally:
        os.close(src)
    return digest


def reflink(src: int, out: int) -> bool:
    try:
        fcntl.ioctl(out, _FICLONE, src)
        return True
    except OSError:  # not Linux, another filesystem, across filesystems: copy the bytes
        return False


def hash_fd(fd: int, digest: Digest) -> None:
    pos = 0
    while chunk := os.pread(fd, CHUNK, pos):
        digest.update(chunk)
        pos += len(chunk)


def copy_fd(src: int, out: int, digest: Digest, folder: Path, size: int) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        try:
            n = os.readv(src, [buf])
        except OSError as exc:
            raise SourceError(exc.strerror or type(exc).__name__) from None
        if not n:
            return
        digest.update(view[:n])
        done = 0
        while done < n:
            try:
                done += os.write(out, view[done:n])
            except OSError as exc:
                raise partial.disk_failure(exc, folder, size) from None
