"""What is on disk: the commit, its files, their sizes and hashes, written after a verified download.

The manifest lives at `<local_dir>/.gatedfetch/manifest.json`. A re-run trusts a file when its size
and modification time still match what was recorded right after it was verified (re-hashing 3.6 GB
would take seconds; this check takes milliseconds). Anything else is fetched or checked again.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .digest import Digest
from .store.durable import fsync_dir

WORK_DIR = ".gatedfetch"
VERSION = 1


@dataclass
class FileEntry:
    path: str
    size: int
    sha256: str
    verified: bool
    mtime_ns: int = 0
    # where the bytes came from: download | partial | hf-cache | reuse-from (see reuse.py); manifests
    # written before this field existed were all downloads
    source: str = "download"


@dataclass
class Manifest:
    model: str
    revision: str
    commit: str
    endpoint: str
    user: str = ""
    files: list[FileEntry] = field(default_factory=list)
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def work_dir(local_dir: Path) -> Path:
    return local_dir / WORK_DIR


def path_of(local_dir: Path) -> Path:
    return work_dir(local_dir) / "manifest.json"


def load(local_dir: Path, warn: Callable[[str], None] | None = None) -> Manifest | None:
    """The manifest of the last completed run; None when there is none, or it cannot be used (then `warn` hears
    why: a damaged file, or one a newer version wrote). Without it every file is checked again, never trusted."""
    path = path_of(local_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"not valid JSON: {exc}"
        _unusable(warn, path, f"cannot be read ({why})")
        return None
    version = raw.get("version") if isinstance(raw, dict) else None
    if isinstance(version, int) and version > VERSION:
        newer = f"was written by a newer version of this tool (format {version}, this one reads {VERSION})"
        _unusable(warn, path, newer)
        return None
    try:
        if version != VERSION:
            raise TypeError(f"format {version!r}")
        files = [FileEntry(**f) for f in raw.pop("files", [])]
        raw.pop("version", None)
        return Manifest(**raw, files=files)
    except (TypeError, AttributeError) as exc:
        _unusable(warn, path, f"is not a manifest this tool wrote ({exc})")
        return None


def _unusable(warn: Callable[[str], None] | None, path: Path, why: str) -> None:
    if warn is not None:
        warn(f"{path} {why}: ignored; the files already in place are checked against the Hub's hashes instead")


def save(local_dir: Path, manifest: Manifest) -> None:
    """Atomic: a reader sees the old manifest or the new one, never half of one. Durable: fsync'ed before the
    rename, its folder after. Call it only once every file it lists is durable (the transfer returns nothing
    else): a re-run trusts the manifest without reading the files, so after a power cut it must not list a
    file whose bytes were still in the page cache."""
    target = path_of(local_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".manifest.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest.to_json(), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def stamp(local_dir: Path, entry: FileEntry) -> FileEntry:
    """Record the file's current modification time (call right after it was verified)."""
    entry.mtime_ns = (local_dir / entry.path).stat().st_mtime_ns
    return entry


def intact(local_dir: Path, entry: FileEntry) -> bool:
    try:
        st = (local_dir / entry.path).stat()
    except OSError:
        return False
    return st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes."""
    return Digest(0, None, None).update_from(path).sha256.hexdigest()


def recheck(local_dir: Path, manifest: Manifest) -> tuple[list[str], list[FileEntry]]:
    """Paths not present as recorded, and the entries re-stamped because only their time stamp moved.

    A file of the recorded size whose modification time changed (`touch`, `cp -r`, `tar` without times)
    is hashed: when its sha256 is the recorded one it is kept and its entry takes the new time stamp.
    """
    gaps: list[str] = []
    restamped: list[FileEntry] = []
    for e in manifest.files:
        if intact(local_dir, e):
            continue
        path = local_dir / e.path
        try:
            same = path.stat().st_size == e.size and sha256_of(path) == e.sha256
        except OSError:
            same = False
        if same:
            restamped.append(stamp(local_dir, e))
        else:
            gaps.append(e.path)
    return gaps, restamped


def missing(local_dir: Path, manifest: Manifest | None) -> list[str]:
    """Paths that are not present as recorded; [] means the local copy is complete."""
    if manifest is None:
        return ["no manifest (never completed here)"]
    return [e.path for e in manifest.files if not intact(local_dir, e)]
