"""Filing the model into huggingface_hub's cache (`--also-cache`), as the installed library lays it out
and manages it (`hf cache ls`, `hf cache verify`, `hf cache rm`):

  models--{org}--{name}/blobs/<etag>              the bytes (a regular file; the library's own 2.x blobs
                                                  may be symlinks into <cache>/blobs/<2 hex>/<hash>)
  models--{org}--{name}/snapshots/<commit>/<path> a relative symlink to ../../blobs/<etag>
  models--{org}--{name}/refs/<revision>           the commit, no newline
  .locks/models--{org}--{name}/<etag>.lock        huggingface_hub's lock for that blob

so that `hf_hub_download(..., local_files_only=True)` and `HF_HUB_OFFLINE=1 hf download` find it offline.
Where that cache is (`hub_cache`, `repo_cache`) and a file's blob name (`etag`) are here too: reuse looks
there for bytes to bring in.

A blob already there is trusted only once verified (size, then hash; a small record in our work folder
keyed on the blob's inode and mtime spares the hash on the next run). One found wrong (a flipped byte,
truncated, a symlink to a missing or damaged store entry) is replaced, under huggingface_hub's lock, by the
verified file from the target folder; if it cannot be, a warning says so and why. Nothing is written, and
no lock taken, when the cache already holds the file right. A wait on a lock that another process (a
running `hf download`) holds is spoken and bounded (`GATEDFETCH_LOCK_WAIT`, one deadline for the whole
filing); then the file is left out with a warning: the model itself is ready in the target folder.
"""

from __future__ import annotations

import errno
import os
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as LockTimeout

from . import failures, manifest, store
from .digest import Digest
from .hub_client import RepoFile, Snapshot
from .local_bytes import TARGET, bring_one

LOCK_WAIT_VARIABLE = "GATEDFETCH_LOCK_WAIT"
LOCK_WAIT = 90.0  # seconds, for all of huggingface_hub's locks together: the run ends within 2 minutes
SPEAK_EVERY = 10.0
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


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


def lock_wait() -> float:
    """$GATEDFETCH_LOCK_WAIT seconds (>= 0), else LOCK_WAIT."""
    value = os.environ.get(LOCK_WAIT_VARIABLE, "").strip()
    try:
        return max(0.0, float(value)) if value else LOCK_WAIT
    except ValueError:
        return LOCK_WAIT


@dataclass
class Filed:
    """What --also-cache did: `snapshot` is named only when every file is in it."""

    storage: Path
    total: int
    snapshot: Path | None = None
    filed: int = 0  # files whose snapshot pointer leads to a verified blob
    written: int = 0  # bytes written into the cache
    changed: bool = False  # anything written at all (a blob, a pointer, a ref)
    notes: list[str] = field(default_factory=list)

    def summary(self, written: str) -> str:
        """One line: the snapshot folder and what was written (`written`: the bytes, as the report counts them)."""
        if self.snapshot is None:
            return f"not in the Hugging Face cache: {self.filed} of {self.total} files filed in {self.storage}"
        did = f"{written} written" if self.changed else "already there, nothing written"
        return f"also in the Hugging Face cache: {self.snapshot} ({did})"


class _Unwritable(Exception):
    """The cache cannot be written here (read-only, another user's): stop filing, say it once."""


def also_cache(
    snap: Snapshot, local_dir: Path, link: bool, say: Callable[[str], None], wait: float | None = None
) -> Filed:
    """File every file of `snap` (verified in `local_dir`) into huggingface_hub's cache."""
    storage = repo_cache(snap.repo)
    snapshot = storage / "snapshots" / snap.commit
    done = Filed(storage, len(snap.files))
    deadline = time.monotonic() + (lock_wait() if wait is None else wait)
    work = manifest.work_dir(local_dir)
    try:
        for f in snap.files:
            tag = etag(f)
            if not tag:
                done.notes.append(f"{f.path}: the Hub lists no hash for it, so it has no blob name: not in the cache")
                continue
            if _file_one(f, tag, snap, local_dir, work, link, storage, snapshot, deadline, say, done):
                done.filed += 1
        if done.filed == done.total:
            _write_ref(storage, snap, done)
    except _Unwritable as exc:
        done.notes.append(f"the Hugging Face cache at {hub_cache()} cannot be written ({exc}): the model was not "
                          f"filed there ({done.filed} of {done.total} files already were); it is ready in {local_dir}")
    if done.filed == done.total:
        done.snapshot = snapshot
    return done


def _file_one(
    f: RepoFile, tag: str, snap: Snapshot, local_dir: Path, work: Path, link: bool, storage: Path, snapshot: Path,
    deadline: float, say: Callable[[str], None], done: Filed,
) -> bool:
    blob = storage / "blobs" / tag
    pointer = store.safe_dest(snapshot, f.path)
    src = store.safe_dest(local_dir, f.path)
    if _points_to(pointer, blob) and blob_problem(f, blob, src, work) is None:
        return True  # already right: no lock, nothing written
    lock_file = hub_cache() / ".locks" / storage.name / f"{tag}.lock"
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_file), mode=0o664, thread_local=False)
        if not _acquire(lock, lock_file, f.path, deadline, say):
            done.notes.append(
                f"{f.path}: not put in the Hugging Face cache: huggingface_hub's lock {lock_file} was still held "
                f"when the wait ended ({LOCK_WAIT_VARIABLE}; another process, such as `hf download`, is writing "
                f"this file there); the model itself is ready in {local_dir}"
            )
            return False
    except OSError as exc:
        if exc.errno in _UNWRITABLE:
            raise _Unwritable(f"{exc.strerror}: {exc.filename or lock_file}") from None
        done.notes.append(f"{f.path}: could not be put in the cache at {storage} ({exc.strerror or exc})")
        return False
    try:
        problem = blob_problem(f, blob, src, work)  # again: the lock's last holder may have fixed it
        if problem is not None:
            existed = os.path.lexists(blob)
            tmp = blob.with_name(f"{tag}.{uuid.uuid4().hex[:8]}.incomplete")  # as the library names it
            got = bring_one(f, TARGET, src, blob, tmp, link, snap.commit, done.notes, "not put in the cache")
            if got is None:
                if existed:
                    done.notes.append(f"{f.path}: the blob {blob} in the Hugging Face cache is wrong ({problem}) "
                                      "and could not be replaced: delete it (`hf cache rm`) before using it")
                return False
            if existed:
                done.notes.append(f"{f.path}: replaced the blob {blob} in the Hugging Face cache: {problem}")
            _remember(f, blob, got.sha256, work)
            done.written += got.copied_bytes
            done.changed = True
        if not _points_to(pointer, blob):
            _symlink(blob, pointer)
            done.changed = True
        return True
    except OSError as exc:
        if exc.errno in _UNWRITABLE:
            raise _Unwritable(f"{exc.strerror}: {exc.filename or blob.parent}") from None
        done.notes.append(f"{f.path}: could not be put in the cache at {storage} ({exc.strerror or exc})")
        return False
    except failures.DiskFailure as exc:  # the model itself is ready: a full cache disk is worth a warning
        done.notes.append(f"{f.path}: could not be put in the cache at {storage} ({exc.message})")
        return False
    finally:
        lock.release()


def _acquire(lock: FileLock, lock_file: Path, path: str, deadline: float, say: Callable[[str], None]) -> bool:
    """Take huggingface_hub's lock, waiting at most until `deadline`, and saying so while waiting."""
    try:
        lock.acquire(timeout=0)
        return True
    except LockTimeout:
        pass
    started = time.monotonic()
    if deadline - started > 0:
        say(f"hf cache: waiting for huggingface_hub's lock {lock_file} (another process is writing {path} "
            f"into the cache), up to {deadline - started:.0f} s")
    while (left := deadline - time.monotonic()) > 0:
        try:
            lock.acquire(timeout=min(SPEAK_EVERY, left))
            return True
        except LockTimeout:
            if deadline - time.monotonic() > 0:
                say(f"hf cache: still waiting for {lock_file}: {time.monotonic() - started:.0f} s so far")
    return False


def blob_problem(f: RepoFile, blob: Path, src: Path, work: Path) -> str | None:
    """None when `blob` (followed through its symlinks) holds the file's listed bytes; else what is wrong."""
    real = Path(os.path.realpath(blob))
    try:
        st = real.stat()
    except OSError:
        if os.path.islink(blob):
            return f"it is a symlink to {real}, which does not exist"
        return "missing"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size != f.size:
        return f"{st.st_size} bytes, the Hub lists {f.size}"
    try:
        if real.samefile(src):
            return None  # a hard link to the verified file in the target folder
    except OSError:
        pass
    if store.read_marker(_marker(f, blob, work), f.path, f.size, real) is not None:
        return None  # verified by an earlier run, unchanged since (inode, size, mtime)
    try:
        digest = Digest(f.size, f.sha256, f.blob_sha1).update_from(real)
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    if not digest.checked:
        return "the Hub lists no hash to check it against"
    mismatch = digest.mismatch()
    if mismatch is not None:
        return f"its {mismatch[0]} is not the one the Hub lists"
    _remember(f, blob, digest.sha256.hexdigest(), work)
    return None


def _marker(f: RepoFile, blob: Path, work: Path) -> Path:
    return store.marker_path(work, etag(f) or "", f"hf-cache:{blob}")


def _remember(f: RepoFile, blob: Path, sha256: str, work: Path) -> None:
    marker = _marker(f, blob, work)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    store.write_marker(marker, f.path, Path(os.path.realpath(blob)), sha256, True)


def _points_to(pointer: Path, blob: Path) -> bool:
    try:
        return os.readlink(pointer) == os.path.relpath(blob, pointer.parent)
    except OSError:
        return False


def _symlink(blob: Path, pointer: Path) -> None:
    """snapshots/<commit>/<path> → ../../blobs/<etag> (relative, one more ../ per folder in the path)."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(f".{pointer.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(os.path.relpath(blob, pointer.parent), tmp)
    os.replace(tmp, pointer)


def _write_ref(storage: Path, snap: Snapshot, done: Filed) -> None:
    """refs/<revision> ← the commit, unless it already says so."""
    if snap.revision == snap.commit:
        return
    ref = storage / "refs" / snap.revision
    try:
        if ref.read_text() == snap.commit:
            return
    except OSError:
        pass
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp_ref = ref.with_name(f"{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp_ref.write_text(snap.commit)  # no newline: the library reads the file whole
        os.replace(tmp_ref, ref)
        done.changed = True
    except OSError as exc:
        if exc.errno in _UNWRITABLE:
            raise _Unwritable(f"{exc.strerror}: {exc.filename or ref.parent}") from None
        done.notes.append(f"could not record {snap.revision} → {snap.commit[:10]} in {ref} ({exc.strerror or exc})")
