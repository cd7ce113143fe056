"""Bytes already on this machine: the target folder itself, huggingface_hub's cache and other copies of
the model, used only once verified.

Where a file's bytes may already be, in this order:
  0. the file's own place in the target folder: one with the listed size whose hash matches is kept as it
     is (source "in-place"), with or without a manifest of ours (a folder `hf download --local-dir` filled,
     a `cp -r` of a finished target, a `touch`ed file); one that does not match is named in a warning and
     replaced through the usual partial → verify → rename;
  1. the target folder's own partial: one that holds the whole file is finished by the transfer (no
     request); one that holds only part of it yields to a complete verified copy found below, which
     needs no network at all;
  2. huggingface_hub's cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`, as
     `huggingface_hub.constants` resolves them): `models--{org}--{name}/blobs/<etag>`, where the etag is
     the sha256 of an LFS file and the git blob sha1 of a small one
     (https://huggingface.co/docs/huggingface_hub/guides/manage-cache); in huggingface_hub 2.x that blob
     may be a relative or absolute symlink into the shared store `<cache>/blobs/<2 hex>/<hash>`;
  3. each `--reuse-from DIR`, at the file's own path in the repo (another checkout's
     `checkpoints/openaudio-s1-mini`, or a cache snapshot folder of symlinks).

A candidate is used only when its size, then its hash (sha256, or the git blob sha1 for a small file),
match what the Hub lists for the wanted commit. One that does not is left exactly as it is and named in
one warning. A used candidate comes into place through a temporary file beside the partials, verified,
then `os.replace`d: a crash mid-copy leaves nothing half-made at the destination, and the next run
removes the leftover (`sweep_copies`). With `--link` (and the same filesystem) the file becomes a hard
link to the candidate's real file (symlinks resolved first): one inode, no copy, so editing either file
in place changes both; what lands is checked to be that regular file, else the bytes are copied and the
run says so. Nothing here ever writes to, moves or chmods a candidate.

Filing the model into huggingface_hub's cache (`--also-cache`) is the other way round: see hf_cache.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from . import failures, store
from .digest import Digest
from .hf_cache import etag, repo_cache
from .hub_client import RepoFile, Snapshot
from .local_bytes import HF_CACHE, IN_PLACE, REUSE_FROM, Reused, bring_one


def candidates(f: RepoFile, repo: str, reuse_from: Sequence[Path]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    tag = etag(f)
    if tag:
        out.append((HF_CACHE, repo_cache(repo) / "blobs" / tag))
    for folder in reuse_from:
        out.append((REUSE_FROM, store.safe_dest(folder, f.path)))
    return out


def bring_all(
    todo: Sequence[RepoFile], snap: Snapshot, local_dir: Path, work_dir: Path, reuse_from: Sequence[Path], link: bool
) -> tuple[list[Reused], list[str]]:
    """Put in place every file of `todo` whose verified bytes are already on this machine.

    Returns what was reused (or kept in place) and one warning per candidate that was found but not used."""
    reused: list[Reused] = []
    notes: list[str] = []
    sweep_copies(work_dir)
    for f in todo:
        tag = etag(f)
        if not tag:
            continue  # nothing to verify against
        dest = store.safe_dest(local_dir, f.path)
        kept = _keep_in_place(f, dest, work_dir, tag, snap.commit, notes)
        if kept is not None:
            reused.append(kept)
            continue
        if not store.small.is_small(f.size) and store.bytes_on_disk(work_dir, tag, f.size) >= f.size:
            continue  # the partial already holds it all (a small file has none: it comes whole)
        for source, cand in candidates(f, snap.repo, reuse_from):
            if not os.path.exists(cand) or _same_file(cand, dest):
                continue  # nothing there (most candidates, most runs): no lock taken for it
            got = _bring_locked(f, source, cand, dest, work_dir, tag, link, snap.commit, notes)
            if got is not None:
                reused.append(got)
                break
    return reused, notes


def sweep_copies(work_dir: Path) -> list[Path]:
    """Remove the `.copy` files that no live run is writing: leftovers of a copy (or a hard link) killed
    halfway, whatever their source is now. A live run holds the content's lock while its copy exists."""
    removed: list[Path] = []
    try:
        leftovers = sorted((work_dir / "partial").glob("*.copy"))
    except OSError:
        return removed
    for copy in leftovers:
        key = copy.name.split(".", 1)[0]
        lock = store.content_lock(work_dir, key)
        try:
            if not store.try_lock(lock, work_dir):
                continue  # a run is bringing this content in now
        except failures.DiskFailure:
            continue  # the lock cannot be taken: leave it
        try:
            copy.unlink(missing_ok=True)
            removed.append(copy)
        except OSError:
            pass
        finally:
            lock.release()
    return removed


def _keep_in_place(f: RepoFile, dest: Path, work_dir: Path, tag: str, commit: str, notes: list[str]) -> Reused | None:
    """The file already at its place with the listed size, when its hash matches (under the content's lock,
    so that a concurrent run's transfer trusts it through the marker). A symlink is never kept: it is a
    pointer to bytes elsewhere, replaced by the file itself."""
    try:
        st = dest.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
        return None
    if store.small.is_small(f.size):
        # No lock and no marker for a small file (the transfer takes neither for it, see store/small.py): hashing
        # a few kB costs less than either. A file replaced while it is read is caught by the stat after.
        return _verify_in_place(f, dest, st, commit, notes)
    lock = store.content_lock(work_dir, tag)
    if not store.try_lock(lock, work_dir):
        return None  # another run is fetching or bringing it in: the transfer waits for it
    try:
        marker = store.marker_path(work_dir, tag, f.path)
        done = store.read_marker(marker, f.path, f.size, dest)
        if done is not None and done[1]:  # verified when it was put there, unchanged since: no need to hash
            return Reused(f.path, f.size, done[0], IN_PLACE, dest, False)
        kept = _verify_in_place(f, dest, st, commit, notes)
        if kept is not None:
            store.write_marker(marker, f.path, dest, kept.sha256, True, IN_PLACE)
        return kept
    finally:
        lock.release()


def _verify_in_place(f: RepoFile, dest: Path, st: os.stat_result, commit: str, notes: list[str]) -> Reused | None:
    """The file at `dest` (whose lstat was `st`) kept when its hash is the listed one and it did not change while
    it was read."""
    try:
        digest = Digest(f.size, f.sha256, f.blob_sha1).update_from(dest)
        after = dest.lstat()
    except OSError as exc:
        notes.append(f"{f.path}: could not read the file in place at {dest} ({exc.strerror or exc}); replacing it")
        return None
    if (after.st_ino, after.st_size, after.st_mtime_ns) != (st.st_ino, st.st_size, st.st_mtime_ns):
        return None  # it changed while it was read: fetch it as any other
    mismatch = digest.mismatch()
    bad = (mismatch[0] if mismatch else None) if digest.checked else "hash (the Hub lists none)"
    if bad is not None:
        notes.append(f"{f.path}: the file in place at {dest} does not match: its {bad} is not the one "
                     f"the Hub lists for commit {commit[:10]}; replacing it")
        return None
    return Reused(f.path, f.size, digest.sha256.hexdigest(), IN_PLACE, dest, False)


def _same_file(a: Path, b: Path) -> bool:
    """`a` is the regular file at `b` (not merely what a symlink at `b` points to)."""
    try:
        return not b.is_symlink() and a.samefile(b)
    except OSError:
        return False


def _bring_locked(
    f: RepoFile, source: str, cand: Path, dest: Path, work_dir: Path, tag: str, link: bool, commit: str,
    notes: list[str],
) -> Reused | None:
    """The transfer's lock for this content is held meanwhile: a concurrent run neither fetches nor copies it
    twice (one that holds it now is fetching it: leave the file to the transfer, which waits and then trusts
    the marker written here)."""
    lock = store.content_lock(work_dir, tag)
    if not store.try_lock(lock, work_dir):
        return None
    try:
        got = bring_one(f, source, cand, dest, store.copy_path(work_dir, tag), link, commit, notes)
        if got is not None:
            store.write_marker(store.marker_path(work_dir, tag, f.path), f.path, dest, got.sha256, True, got.source)
            store.drop_partial(work_dir, tag)  # this machine's earlier partial of this content
        return got
    finally:
        lock.release()


