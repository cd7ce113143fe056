"""The per-content lock: one run at a time fetches, or copies in, a given content into a folder.

Not thread-local: a lock taken by one stream is released by whichever thread closes the file's job. Nobody
waits on it: a run that finds it taken does other work and asks again (the transfer), or leaves the file to
the run that holds it (reuse), which ends with a marker the next holder trusts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .names import disk_failure, lock_path

if TYPE_CHECKING:
    from filelock import FileLock


def content_lock(work_dir: Path, key: str) -> FileLock:
    """The lock of the content named `key` in `work_dir` (not taken yet)."""
    from filelock import FileLock  # imported when a file must come: a re-run of a complete copy never needs it

    return FileLock(str(lock_path(work_dir, key)), thread_local=False)


def try_lock(lock: FileLock, work_dir: Path) -> bool:
    """Take `lock` (one of `work_dir`'s) if it is free (its folder made first); False when another run holds
    it. A lock that cannot be taken at all (a read-only folder, a full disk) is the disk failure."""
    from filelock import Timeout

    try:
        (work_dir / "locks").mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        return False
    except OSError as exc:
        raise disk_failure(exc, work_dir / "locks", 0) from None
    return True
