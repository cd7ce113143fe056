"""Bytes already on this machine: huggingface_hub's cache and other copies of the model, used only once verified.

Where a file's bytes may already be, in this order:
  1. the target folder's own partial: one that holds the whole file is finished by the transfer (no
     request); one that holds only part of it yields to a complete verified copy found below, which
     needs no network at all;
  2. huggingface_hub's cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`, as
     `huggingface_hub.constants` resolves them): `models--{org}--{name}/blobs/<etag>`, where the etag is
     the sha256 of an LFS file and the git blob sha1 of a small one
     (https://huggingface.co/docs/huggingface_hub/guides/manage-cache);
  3. each `--reuse-from DIR`, at the file's own path in the repo (another checkout's
     `checkpoints/openaudio-s1-mini`, or a cache snapshot folder).

A candidate is used only when its size, then its hash (sha256, or the git blob sha1 for a small file),
match what the Hub lists for the wanted commit. One that does not is left exactly as it is and named in
one warning. A used candidate comes into place through a temporary file beside the partials, verified,
then `os.replace`d: a crash mid-copy leaves nothing half-made at the destination. With `--link` (and the
same filesystem) the file becomes a hard link to the candidate: one inode, no copy, so editing either
file in place changes both; nothing here ever writes to, moves or chmods a candidate.

`also_cache` does the reverse: it files the model into huggingface_hub's cache layout (blobs/<etag>,
snapshots/<commit>/<path> as relative symlinks to the blob, refs/<revision> holding the commit), so that
`hf_hub_download(..., local_files_only=True)` and `HF_HUB_OFFLINE=1 hf download` find it offline.
"""

from __future__ import annotations

import errno
import fcntl
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as LockTimeout

from . import failures
from .hub_client import RepoFile, Snapshot
from .transfer import partial as partial_mod
from .transfer.fetch import safe_dest
from .transfer.segments import Digest

DOWNLOAD = "download"
HF_CACHE = "hf-cache"
REUSE_FROM = "reuse-from"
PARTIAL = "partial"
SOURCES = (DOWNLOAD, HF_CACHE, REUSE_FROM, PARTIAL)
TARGET = "target"  # the target folder itself, as the source of --also-cache
WHERE = {HF_CACHE: "the Hugging Face cache", REUSE_FROM: "a --reuse-from folder", TARGET: "the target folder"}

CHUNK = 1 << 20
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int); btrfs, XFS and bcachefs share extents on request


@dataclass(frozen=True)
class Reused:
    path: str
    size: int
    sha256: str  # of the content (always computed)
    source: str  # HF_CACHE | REUSE_FROM
    origin: Path  # the candidate the bytes came from
    linked: bool  # a hard link to `origin` (else a copy)


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_cache(repo: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return hub_cache() / repo_folder_name(repo_id=repo, repo_type="model")


def etag(f: RepoFile) -> str | None:
    """The name huggingface_hub gives the file's blob: its sha256 (LFS) or git blob sha1 (small file)."""
    tag = f.sha256 or f.blob_sha1
    return tag.lower() if tag else None


def candidates(f: RepoFile, repo: str, reuse_from: Sequence[Path]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    tag = etag(f)
    if tag:
        out.append((HF_CACHE, repo_cache(repo) / "blobs" / tag))
    for folder in reuse_from:
        out.append((REUSE_FROM, safe_dest(folder, f.path)))
    return out


def bring_all(
    todo: Sequence[RepoFile], snap: Snapshot, local_dir: Path, work_dir: Path, reuse_from: Sequence[Path], link: bool
) -> tuple[list[Reused], list[str]]:
    """Put in place every file of `todo` whose verified bytes are already on this machine.

    Returns what was reused and one warning per candidate that was found but not used."""
    reused: list[Reused] = []
    notes: list[str] = []
    for f in todo:
        tag = etag(f)
        if not tag or partial_mod.bytes_on_disk(work_dir, tag, f.size) >= f.size:
            continue  # nothing to verify against; or the partial already holds it all
        dest = safe_dest(local_dir, f.path)
        for source, cand in candidates(f, snap.repo, reuse_from):
            if _same_file(cand, dest):
                continue
            got = _bring_locked(f, source, cand, dest, work_dir, tag, link, snap.commit, notes)
            if got is not None:
                reused.append(got)
                break
    return reused, notes


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _bring_locked(
    f: RepoFile, source: str, cand: Path, dest: Path, work_dir: Path, tag: str, link: bool, commit: str,
    notes: list[str],
) -> Reused | None:
    """The transfer's lock for this content is held meanwhile: a concurrent run neither fetches nor copies it
    twice (one that holds it now is fetching it: leave the file to the transfer, which waits and then trusts
    the marker written here)."""
    lock = FileLock(str(partial_mod.lock_path(work_dir, tag)), thread_local=False)
    try:
        partial_mod.lock_path(work_dir, tag).parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except LockTimeout:
        return None
    except OSError as exc:
        raise partial_mod.disk_failure(exc, work_dir / "locks", 0) from None
    try:
        copy = partial_mod.partial_path(work_dir, tag).with_suffix(".copy")
        got = _bring(f, source, cand, dest, copy, link, commit, notes)
        if got is not None:
            partial_mod.write_marker(
                partial_mod.marker_path(work_dir, tag, f.path), f.path, dest, got.sha256, True
            )
            stale = partial_mod.partial_path(work_dir, tag)  # this machine's earlier partial of this content
            stale.unlink(missing_ok=True)
            stale.with_suffix(".pieces").unlink(missing_ok=True)
        return got
    finally:
        lock.release()


def _bring(
    f: RepoFile, source: str, cand: Path, dest: Path, tmp: Path, link: bool, commit: str, notes: list[str],
    instead: str = "downloading it instead",
) -> Reused | None:
    """Verify `cand` and put it at `dest` through `tmp`; None (and a note, if it exists) when it is not usable."""
    try:
        st = cand.stat()
    except OSError:
        return None  # not there: nothing to say
    where = WHERE[source]
    if not os.path.isfile(cand):
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
        raise partial_mod.disk_failure(exc, tmp.parent, f.size) from None
    same_fs = _device(tmp.parent) == st.st_dev
    try:
        if link and same_fs:
            digest, linked = _link_verified(f, cand, st, tmp), True
        else:
            digest, linked = _copy_verified(f, cand, tmp), False
    except _SourceError as exc:
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
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise partial_mod.disk_failure(exc, dest.parent, f.size) from None
    partial_mod.fsync_dir(dest.parent)
    assert digest is not None
    return Reused(f.path, f.size, digest.sha256.hexdigest(), source, cand, linked)


class _SourceError(Exception):
    """The candidate could not be read (its disk, its permissions): skip it, download instead."""


def _device(folder: Path) -> int:
    try:
        return folder.stat().st_dev
    except OSError:
        return -1


def _link_verified(f: RepoFile, cand: Path, before: os.stat_result, tmp: Path) -> Digest | None:
    """Hash the candidate, then hard-link it at `tmp`; None when it changed meanwhile (size, time, inode)."""
    digest = Digest(f.size, f.sha256, f.blob_sha1)
    try:
        with open(cand, "rb", buffering=0) as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
        os.link(cand, tmp)
        after = tmp.stat()
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP) and not tmp.exists():
            return _copy_verified(f, cand, tmp)  # the filesystem allows no link here: copy instead
        raise _SourceError(exc.strerror or type(exc).__name__) from None
    same = (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    return digest if same else None


def _copy_verified(f: RepoFile, cand: Path, tmp: Path) -> Digest:
    """Copy `cand` to `tmp` and hash it on the way: a reflink (shared extents, no bytes copied) where the
    filesystem offers one, then the hash reads the clone; else one read-hash-write pass. fsync'ed."""
    digest = Digest(f.size, f.sha256, f.blob_sha1)
    try:
        src = os.open(cand, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _SourceError(exc.strerror or type(exc).__name__) from None
    try:
        try:
            out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise partial_mod.disk_failure(exc, tmp.parent, f.size) from None
        try:
            if _reflink(src, out):
                _hash_fd(out, digest)
            else:
                _copy_fd(src, out, digest, tmp.parent, f.size)
            os.fsync(out)
        except OSError as exc:
            raise partial_mod.disk_failure(exc, tmp.parent, f.size) from None
        finally:
            os.close(out)
    finally:
        os.close(src)
    return digest


def _reflink(src: int, out: int) -> bool:
    try:
        fcntl.ioctl(out, _FICLONE, src)
        return True
    except OSError:  # not Linux, another filesystem, across filesystems: copy the bytes
        return False


def _hash_fd(fd: int, digest: Digest) -> None:
    pos = 0
    while chunk := os.pread(fd, CHUNK, pos):
        digest.update(chunk)
        pos += len(chunk)


def _copy_fd(src: int, out: int, digest: Digest, folder: Path, size: int) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        try:
            n = os.readv(src, [buf])
        except OSError as exc:
            raise _SourceError(exc.strerror or type(exc).__name__) from None
        if not n:
            return
        digest.update(view[:n])
        done = 0
        while done < n:
            try:
                done += os.write(out, view[done:n])
            except OSError as exc:
                raise partial_mod.disk_failure(exc, folder, size) from None


# -- the other way: into huggingface_hub's cache ----------------------------------------------------


def also_cache(snap: Snapshot, local_dir: Path, link: bool) -> tuple[Path, int, list[str]]:
    """File every file of `snap` (verified in `local_dir`) into huggingface_hub's cache, as
    `huggingface_hub.file_download` lays it out; the snapshot folder, bytes written and notes."""
    storage = repo_cache(snap.repo)
    locks = hub_cache() / ".locks" / storage.name
    snapshot = storage / "snapshots" / snap.commit
    written = 0
    notes: list[str] = []
    for f in snap.files:
        tag = etag(f)
        if not tag:
            notes.append(f"{f.path}: the Hub lists no hash for it, so it has no blob name: not put in the cache")
            continue
        blob = storage / "blobs" / tag
        pointer = safe_dest(snapshot, f.path)
        try:
            locks.mkdir(parents=True, exist_ok=True)
            # huggingface_hub's own lock for this blob (file_download.py: .locks/<repo folder>/<etag>.lock)
            with FileLock(str(locks / f"{tag}.lock"), mode=0o664):
                if not blob.is_file():
                    tmp = blob.with_name(f"{tag}.{uuid.uuid4().hex[:8]}.incomplete")  # as the library names it
                    src = safe_dest(local_dir, f.path)
                    got = _bring(f, TARGET, src, blob, tmp, link, snap.commit, notes, "not put in the cache")
                    if got is None:
                        continue
                    written += 0 if got.linked else f.size
                _symlink(blob, pointer)
        except OSError as exc:
            notes.append(f"{f.path}: could not be put in the cache at {storage} ({exc.strerror or exc})")
        except failures.DiskFailure as exc:  # the model itself is ready: a full cache disk is worth a warning
            notes.append(f"{f.path}: could not be put in the cache at {storage} ({exc.message})")
    if snap.revision != snap.commit:
        ref = storage / "refs" / snap.revision
        try:
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp_ref = ref.with_name(f"{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
            tmp_ref.write_text(snap.commit)  # no newline: the library reads the file whole
            os.replace(tmp_ref, ref)
        except OSError as exc:
            notes.append(f"could not record {snap.revision} → {snap.commit[:10]} in {ref} ({exc.strerror or exc})")
    return snapshot, written, notes


def _symlink(blob: Path, pointer: Path) -> None:
    """snapshots/<commit>/<path> → ../../blobs/<etag> (relative, one more ../ per folder in the path)."""
    target = os.path.relpath(blob, pointer.parent)
    if os.path.islink(pointer) and os.readlink(pointer) == target:
        return
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(f".{pointer.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target, tmp)
    os.replace(tmp, pointer)
