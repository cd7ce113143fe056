"""Completion markers: how a run that waited on a content's lock tells "the other run just put this file in
place" from "dest is some older file", without hashing dest again."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

# Completion protocol (two processes on one folder both end with good files, one transfer). The lock
# serialises them; the one that waited must then tell "the other just completed this file" from "dest
# is some older file". Re-hashing dest would cost seconds per GB, so the finisher, right after
# os.replace, atomically writes a small marker `done/<key>-<path digest>.json` holding dest's (device,
# inode, size, mtime_ns) and its hash. The next holder of the lock trusts dest only if its stat still
# matches: any later change to dest (another revision replacing it, an edit) changes the inode or
# mtime and voids the marker. Losing the marker only means a re-download.


def write_marker(
    marker: Path, path: str, dest: Path, sha256: str, verified: bool, source: str = ""
) -> str | None:
    """Record that `dest` holds these verified bytes, and where they came from (download, partial, hf-cache, …)
    for a run that finds them done; what went wrong, when the marker could not be written (the file itself is
    in place and good: a run that waited on its lock will only fetch it once more)."""
    try:
        st = dest.stat()
        doc = {
            "path": path,
            "size": st.st_size,
            "sha256": sha256,
            "verified": verified,
            "source": source,
            "dev": st.st_dev,
            "ino": st.st_ino,
            "mtime_ns": st.st_mtime_ns,
        }
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, marker)
    except OSError as exc:
        return (
            f"{path}: could not record its completion in {marker.parent} ({exc.strerror or exc}); the file is in "
            "place and verified, but a run waiting for it at the same time may fetch it again"
        )
    return None


def read_marker(marker: Path, path: str, size: int, dest: Path) -> tuple[str, bool, str] | None:
    """(sha256, verified, source) of `dest` when the marker still describes it, else None (source: "" when
    the marker predates it)."""
    try:
        doc = json.loads(marker.read_text())
        st = dest.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    same = (
        doc.get("path") == path
        and doc.get("size") == size == st.st_size
        and doc.get("dev") == st.st_dev
        and doc.get("ino") == st.st_ino
        and doc.get("mtime_ns") == st.st_mtime_ns
        and isinstance(doc.get("sha256"), str)
    )
    source = doc.get("source")
    return (doc["sha256"], bool(doc.get("verified")), source if isinstance(source, str) else "") if same else None
