"""Small files: fetched whole into memory, verified there, then written and moved into place in one go.

A file of at most SMALL_FILE bytes has no partial, no piece record, no lock and no marker: what those buy a big
file (resuming, one transfer between two runs) is worth less than they cost a small one (about 4 ms of local
work each, measured, against a few kB of bytes). Two runs on one folder may then both fetch a small file; each
moves its own verified copy into place, so dest always holds the right bytes.

The steps, and what a crash leaves after each:

  1. the body in memory, its hash checked: a kill -9 leaves nothing on disk.
  2. `land`: written to `partial/<key>.<host>.<pid>-<thread>.small` (not fsync'ed), then `os.replace`d
     to dest. A kill -9 before the rename leaves that temporary file, removed by the next run (`sweep`); after
     it, dest holds the whole verified file (the page cache keeps what was written). A power cut may lose the
     bytes of a file whose rename survived (an empty or short dest): nothing claims it yet, so the next run
     checks it by its hash.
  3. `durable.settle` (one call for the whole run, before the manifest is written): the files' bytes and their
     folders reach the disk. Only then does the manifest list them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .hosts import host_tag, partial_path
from .names import disk_failure

SMALL_FILE = 1 << 20  # files up to this size take the small-file path


def is_small(size: int) -> bool:
    return size <= SMALL_FILE


def _temp_path(work_dir: Path, key: str) -> Path:
    """Unique to this process and thread: two runs (or two threads) landing the same content never share one."""
    return partial_path(work_dir, key).with_suffix(f".{os.getpid()}-{threading.get_ident()}.small")


def land(work_dir: Path, key: str, dest: Path, data: bytes | memoryview) -> None:
    """Write the verified bytes `data` of the content `key` to a temporary file beside the partials and move it
    to `dest` (its folder made first). Not fsync'ed: `durable.settle` does that for all the run's files at once."""
    tmp = _temp_path(work_dir, key)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view, done = memoryview(data), 0
            while done < len(view):
                done += os.write(fd, view[done:])
        finally:
            os.close(fd)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise disk_failure(exc, dest.parent, len(data)) from None


def sweep(work_dir: Path) -> list[Path]:
    """Remove this machine's temporary small files whose run is over (killed between the write and the rename).
    A file of a run still alive (its process id is in the name) is left to it."""
    removed: list[Path] = []
    try:
        leftovers = list((work_dir / "partial").glob(f"*.{host_tag()}.*.small"))
    except OSError:
        return removed
    for tmp in leftovers:
        pid = tmp.name.rsplit(".", 2)[-2].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's process
        return True
    return True
