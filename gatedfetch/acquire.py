"""Bring the files that must come: verified local copies first (reuse), the network for the rest (transfer); the
manifest entries and, per file, the bytes fetched, resumed and copied. Also the filing into huggingface_hub's
cache (--also-cache). Imported only when a file must come: a re-run of a complete copy never needs it."""

from __future__ import annotations

from huggingface_hub.utils import are_progress_bars_disabled

from . import hf_cache, manifest, reuse
from .hub_client import HubClient, RepoFile, Snapshot
from .local_bytes import DOWNLOAD, PARTIAL, WHERE
from .options import Options
from .progress import make_progress
from .report import Reporter
from .transfer import HttpRefused, RemoteFile, Usage, fetch_all
from .units import human_bytes


def transfer(
    opts: Options, rep: Reporter, client: HubClient, snap: Snapshot, todo: list[RepoFile]
) -> tuple[list[manifest.FileEntry], dict[str, dict[str, int]]]:
    """Reuse verified local copies, fetch and verify the rest; return the manifest entries and, per file,
    the bytes fetched and resumed."""
    work = manifest.work_dir(opts.local_dir)
    found, notes = reuse.bring_all(todo, snap, opts.local_dir, work, opts.reuse_from, opts.link)
    for note in notes:
        rep.warn(note)
    entries = []
    traffic: dict[str, dict[str, int]] = {}
    for u in found:
        rep.info(u.describe())
        entry = manifest.FileEntry(u.path, u.size, u.sha256, True, source=u.source)
        entries.append(manifest.stamp(opts.local_dir, entry))
        traffic[u.path] = {"fetched_bytes": 0, "resumed_from": 0, "copied_bytes": u.copied_bytes}
    done = {u.path for u in found}
    remote = []
    for f in (f for f in todo if f.path not in done):
        remote.append(
            RemoteFile(
                path=f.path,
                size=f.size,
                url=client.file_url(snap.repo, snap.commit, f.path),
                sha256=f.sha256,
                blob_sha1=f.blob_sha1,
            )
        )
    if not remote:
        return entries, traffic
    # huggingface_hub's own switch (HF_HUB_DISABLE_PROGRESS_BARS=1, or disable_progress_bars()) turns ours off too.
    quiet = opts.quiet or are_progress_bars_disabled()
    progress = make_progress("quiet" if quiet else ("tty" if rep.err.isatty() else "lines"), rep.err)
    usage: list[Usage] = []
    try:
        results = fetch_all(
            remote,
            opts.local_dir,
            work,
            client.headers(),
            progress=progress,
            endpoint=client.endpoint,
            connections=opts.connections,
            usage=usage,
            say=rep.warn,
        )
    except HttpRefused as exc:
        raise client.classify_status(exc.status, exc.headers, snap.repo, snap.revision) from None
    finally:
        progress.close()
        if usage:
            rep.clock.streams_used(usage[0].as_dict())
    for r in results:
        traffic[r.path] = {"fetched_bytes": r.fetched_bytes, "resumed_from": r.resumed_from}
        source = r.source or (PARTIAL if r.resumed_from else DOWNLOAD)
        entry = manifest.FileEntry(r.path, r.size, r.sha256, r.verified, source=source)
        entries.append(manifest.stamp(opts.local_dir, entry))
        if r.resumed_from:
            rep.info(f"{r.path}: resumed from {r.resumed_from / 1e6:.1f} MB")
        if not r.verified:
            rep.warn(f"{r.path}: the hub gave no hash for it; size checked, content not verified")
        for note in r.notes:
            rep.warn(note)
    return entries, traffic


def reuse_summary(entries: list[manifest.FileEntry], traffic: dict[str, dict[str, int]]) -> str:
    """"; 3.6 GB reused from the Hugging Face cache, 0 B downloaded" when this run reused anything."""
    reused = {source: 0 for source in WHERE}
    for e in entries:
        if e.path in traffic and e.source in reused:
            reused[e.source] += e.size
    if not any(reused.values()):
        return ""
    parts = [f"{human_bytes(n)} reused from {WHERE[source]}" for source, n in reused.items() if n]
    downloaded = sum(t["fetched_bytes"] for t in traffic.values())
    return "; " + ", ".join(parts) + f", {human_bytes(downloaded)} downloaded"


def also_cache(opts: Options, rep: Reporter, snap: Snapshot) -> str | None:
    """File the model into huggingface_hub's cache too; the snapshot folder, when every file is in it."""
    filed = hf_cache.also_cache(snap, opts.local_dir, opts.link, rep.info)
    for note in filed.notes:
        rep.warn(note)
    rep.info(filed.summary(human_bytes(filed.written)))
    return str(filed.snapshot) if filed.snapshot else None

