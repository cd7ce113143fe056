"""Names on disk: a content's key, its lock and its copy beside the partials; a repo path's place in a folder; a
disk error as the failure the user reads."""

from __future__ import annotations

import errno
import hashlib
import re
import shutil
import stat
from pathlib import Path, PurePosixPath

from .. import failures

_HEX_DIGEST = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def content_key(sha256: str | None, blob_sha1: str | None, url: str, size: int) -> str:
    """The name of a file's partial and lock: its expected hash, else a digest of url and size."""
    for digest in (sha256, blob_sha1):
        if digest and _HEX_DIGEST.fullmatch(digest.lower()):
            return digest.lower()
    return "u" + hashlib.sha256(f"{url}\n{size}".encode()).hexdigest()[:40]


def safe_dest(local_dir: Path, path: str) -> Path:
    """Where the repo path `path` lands under `local_dir`: refused (exit 8) when absolute or with '..'."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise failures.unsafe_path(path)
    return local_dir.joinpath(*pure.parts)


def in_place(dest: Path, size: int) -> bool:
    """A regular file of `size` bytes at `dest` (as `hf download --local-dir` leaves it), not a symlink."""
    try:
        st = dest.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def lock_path(work_dir: Path, key: str) -> Path:
    """The lock a run holds while it fetches, or copies in, the content named `key` (one per content)."""
    return work_dir / "locks" / f"{key.lower()}.lock"


def marker_path(work_dir: Path, key: str, path: str) -> Path:
    """The completion marker of the content `key` at the repo path `path` (see markers.py)."""
    return work_dir / "done" / f"{key}-{hashlib.sha256(path.encode()).hexdigest()[:16]}.json"


def disk_failure(exc: OSError, folder: Path, needed: int) -> failures.Failure:
    """A disk error in `folder` as the user reads it: no space (how much is needed, how much is free), else
    not writable."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = 0
        return failures.no_space(str(folder), needed, free)
    return failures.not_writable(str(folder), exc.strerror or type(exc).__name__)
