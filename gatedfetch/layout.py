"""Whether the listing can land in the target folder, and what it takes: which files must come (the rest are
intact as recorded), that every path can land beside the others, and room and write access for them on disk."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from . import failures, manifest, store
from .repo import RepoFile, Snapshot


def plan(
    local_dir: Path, previous: manifest.Manifest | None, snap: Snapshot
) -> tuple[list[RepoFile], list[manifest.FileEntry]]:
    """Which files must be fetched; which recorded ones are still intact (same commit, or same LFS hash)."""
    known = {e.path: e for e in previous.files} if previous else {}
    todo: list[RepoFile] = []
    kept: list[manifest.FileEntry] = []
    for f in snap.files:
        e = known.get(f.path)
        same_content = e is not None and (
            (previous is not None and previous.commit == snap.commit) or (f.sha256 is not None and e.sha256 == f.sha256)
        )
        if e is not None and same_content and e.size == f.size and manifest.intact(local_dir, e):
            kept.append(e)
        else:
            todo.append(f)
    return todo, kept


def check_layout(snap: Snapshot) -> None:
    """Before any byte: every listed path can land in the folder beside the others (exit 8 names the pair)."""
    files = {f.path for f in snap.files}
    for path in sorted(files):
        store.safe_dest(Path("."), path)  # no absolute path, no '..'
        top = path.split("/", 1)[0]
        if top == manifest.WORK_DIR:
            raise failures.state_clash(path, manifest.WORK_DIR)
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in files:
                raise failures.layout_clash(parent, path, f"{parent!r} cannot be both a file and a folder")


def check_disk(local_dir: Path, todo: list[RepoFile], *, write: bool = True) -> None:
    """Room and write access for what is to be fetched. With write=False (--check, --prepare) nothing is
    created: the nearest folder that exists must let us create the rest."""
    work = manifest.work_dir(local_dir)
    needed = 0
    for f in todo:
        if store.in_place(local_dir / f.path, f.size):
            continue  # verified and kept before any byte is fetched (see reuse.py); a mismatch is worth one file
        key = f.sha256 or f.blob_sha1
        # a small file has no partial: it comes whole
        have = store.bytes_on_disk(work, key, f.size) if key and not store.small.is_small(f.size) else 0
        needed += max(0, f.size - have)
    if write:
        try:
            local_dir.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=work, prefix=".write-test-"):
                pass  # unique name: concurrent runs on one folder must not trip over each other
        except OSError as exc:
            raise failures.not_writable(str(local_dir), exc.strerror or str(exc)) from None
        there = local_dir
    else:
        there = local_dir
        while not there.exists() and there != there.parent:
            there = there.parent
        if not there.is_dir():
            raise failures.not_writable(str(local_dir), f"{there} is not a folder")
        if not os.access(there, os.W_OK | os.X_OK):
            raise failures.not_writable(str(local_dir), f"no write permission in {there}")
    free = shutil.disk_usage(there).free
    if needed > free:
        raise failures.no_space(str(local_dir), needed, free)

