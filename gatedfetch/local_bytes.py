"""Bytes already on this machine put in place, verified: a copy into a temporary file hashed on the way (a
reflink where the filesystem shares extents), or a hard link to the real file; the digest checked, then the
temporary file moved into place (`bring_one`). Nothing here writes to the source. Also where bytes come from
(the source names, as the manifest and the --json contract spell them) and the record of a file brought in.

Used by reuse (copies into the target folder) and by hf_cache (the target's files into huggingface_hub's
cache): each holds its own lock meanwhile."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .digest import CHUNK, Digest
from .hub_client import RepoFile
from .store import disk_failure, move_into_place

_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int); btrfs, XFS and bcachefs share extents on request

DOWNLOAD = "download"
HF_CACHE = "hf-cache"
REUSE_FROM = "reuse-from"
PARTIAL = "partial"
IN_PLACE = "in-place"
SOURCES = (DOWNLOAD, HF_CACHE, REUSE_FROM, PARTIAL, IN_PLACE)
TARGET = "target"  # the target folder itself, as the source of --also-cache
WHERE = {
    HF_CACHE: "the Hugging Face cache",
    REUSE_FROM: "a --reuse-from folder",
    IN_PLACE: "the target folder",
    TARGET: "the target folder",
}


@dataclass(frozen=True)
class Reused:
    path: str
    size: int
    sha256: str  # of the content (always computed)
    source: str  # HF_CACHE | REUSE_FROM
    origin: Path  # the candidate the bytes came from
    linked: bool  # a hard link to `origin`'s real file (else a copy, or the file kept in place)
    no_link: str = ""  # with --link, why the bytes were copied instead (EXDEV, EPERM, …)

    def describe(self) -> str:
        if self.source == IN_PLACE:
            return f"{self.path}: already in place, verified"
        if self.linked:
            return f"{self.path}: linked from {self.origin} ({WHERE[self.source]}), verified"
        why = f" (not linked: {self.no_link})" if self.no_link else ""
        return f"{self.path}: copied from {self.origin} ({WHERE[self.source]}){why}, verified"

    @property
    def copied_bytes(self) -> int:
        """Bytes this run wrote to put the file in place (a reflink counts too: the filesystem decides)."""
        return 0 if self.linked or self.source == IN_PLACE else self.size


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
    try:
        digest = Digest(f.size, f.sha256, f.blob_sha1).update_from(real)
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
            raise disk_failure(exc, tmp.parent, f.size) from None
        try:
            if reflink(src, out):
                hash_fd(out, digest)
            else:
                copy_fd(src, out, digest, tmp.parent, f.size)
            os.fsync(out)
        except OSError as exc:
            raise disk_failure(exc, tmp.parent, f.size) from None
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
                raise disk_failure(exc, folder, size) from None


def bring_one(
    f: RepoFile, source: str, cand: Path, dest: Path, tmp: Path, link: bool, commit: str, notes: list[str],
    instead: str = "downloading it instead",
) -> Reused | None:
    """Verify `cand` and put it at `dest` through `tmp`; None (and a note, if it exists) when it is not usable.

    `cand` may be a symlink (a huggingface_hub 2.x blob into the shared store, a snapshot pointer, relative or
    absolute): its real file is what is read, and what a hard link points to."""
    real = Path(os.path.realpath(cand))
    try:
        st = real.stat()
    except OSError:
        return None  # not there (or a dangling symlink): nothing to say
    where = WHERE[source]
    if not stat.S_ISREG(st.st_mode):
        return None

    def ignored(why: str) -> None:
        notes.append(f"{f.path}: ignored {cand} from {where}: {why} for commit {commit[:10]}; {instead} "
                     "(the copy there was left as it is)")

    if st.st_size != f.size:
        ignored(f"{st.st_size} bytes, the Hub lists {f.size}")
        return None
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)  # an earlier run's, stopped mid-copy
    except OSError as exc:
        raise disk_failure(exc, tmp.parent, f.size) from None
    no_link = ""
    try:
        if link and device(tmp.parent) != st.st_dev:
            no_link = "it is on another filesystem"
        if link and not no_link:
            digest, no_link = link_verified(f, real, st, tmp)
        else:
            digest = copy_verified(f, real, tmp)
    except SourceError as exc:
        tmp.unlink(missing_ok=True)
        notes.append(f"{f.path}: could not read {cand} from {where} ({exc}); {instead}")
        return None
    if digest is None:
        bad: str | None = "content (it changed while it was read)"
    elif not digest.checked:
        bad = "hash (the Hub lists none)"  # nothing to verify against: never used unverified
    else:
        mismatch = digest.mismatch()
        bad = mismatch[0] if mismatch else None
    if bad is not None:
        tmp.unlink(missing_ok=True)
        ignored(f"its {bad} is not the one the Hub lists")
        return None
    try:
        move_into_place(tmp, dest, f.size)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    assert digest is not None
    linked = link and not no_link
    return Reused(f.path, f.size, digest.sha256.hexdigest(), source, cand, linked, no_link if link else "")
