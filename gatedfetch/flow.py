"""The one-way flow: find the token → ask the hub → transfer → record and report."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import failures, manifest, prompt, secret, tokens
from .bounded import end_of_phase, install_timeouts
from .hub_client import HubClient, Identity, RepoFile, Snapshot
from .options import Options
from .outcome import Outcome
from .places import PROJECT_DIR
from .report import Reporter
from .units import human_bytes


def offline(opts: Options, rep: Reporter, endpoint: str) -> Outcome:
    """HF_HUB_OFFLINE=1: no request; the local copy must be the model and revision asked for, and complete."""
    out = Outcome.begin(opts, endpoint)
    m = manifest.load(opts.local_dir, rep.warn)
    if m is None:
        return out.failed(failures.offline_incomplete(str(opts.local_dir), "no manifest (never completed here)"))
    asked, holds = f"{opts.model}@{opts.revision}", f"{m.model}@{m.revision}"
    if m.model != opts.model or not _same_revision(opts.revision, m):
        return out.failed(failures.offline_other(str(opts.local_dir), holds, asked))
    gaps, rechecked = manifest.recheck(opts.local_dir, m)
    if gaps:
        return out.failed(failures.offline_incomplete(str(opts.local_dir), ", ".join(gaps[:5])))
    if rechecked:
        rep.info(f"offline: {len(rechecked)} file(s) whose time stamp changed still hold the recorded bytes (sha256)")
        manifest.save(opts.local_dir, m)
    out.commit, out.user, out.files = m.commit, m.user or None, [_file_doc(e) for e in m.files]
    rep.info(f"offline: the local copy of {m.model}@{m.commit[:10]} ({m.revision}) in {opts.local_dir} is complete")
    return out.done()


def _same_revision(asked: str, m: manifest.Manifest) -> bool:
    """The revision the copy was fetched as, or its commit (in full, or a prefix of at least 7 hex digits)."""
    if asked == m.revision or asked == m.commit:
        return True
    return len(asked) >= 7 and all(c in "0123456789abcdef" for c in asked) and m.commit.startswith(asked)


def read_stdin_token() -> str:
    data = sys.stdin.buffer.read(64 * 1024) if sys.stdin is not None else b""
    return data.decode("utf-8", errors="replace")


def find_token(opts: Options, rep: Reporter) -> tokens.Found:
    """The token from the first source that has one; with none, asked for on a terminal, else NoToken (exit 3)."""
    found = look_for_token(opts, rep, ask=True)
    assert found is not None  # with ask=True a missing token raises
    return found


def look_for_token(opts: Options, rep: Reporter, *, ask: bool) -> tokens.Found | None:
    """The token from the first source that has one, said by source and mask. With nothing found: ask on a
    terminal when `ask` (else a NoToken failure); with `ask=False` (--prepare), None."""
    stdin_value = read_stdin_token() if opts.token_stdin else None
    if opts.token_from:  # setup.sh piped the token it found in this variable: that is the "env" source
        kind, source = "env", f"{opts.token_from} from the environment"
    else:
        kind, source = "stdin", "standard input (--token-stdin)"
        if opts.token_stdin and not (stdin_value or "").strip():
            raise failures.empty_stdin()
    res = tokens.resolve(stdin_value, source, os.environ, opts.env_file, kind, opts.token_from)
    for w in res.warnings:
        rep.warn(w)
    if res.found is None:
        unread = res.env_unreadable
        if not ask:
            if unread:
                rep.warn(f"{opts.env_file} {unread.why}: not read")
            return None
        if not prompt.can_prompt():
            raise unread.failure(opts.env_file) if unread else failures.no_token(str(opts.env_file), no_tty=True)
        if unread:
            rep.warn(f"{opts.env_file} {unread.why}: not read")
        warnings: list[str] = []
        typed = tokens.clean(prompt.ask_token(), "the token you typed", warnings)
        for w in warnings:
            rep.warn(w)
        if not typed:
            raise failures.no_token(str(opts.env_file), no_tty=False)
        res.found = tokens.Found(token=typed, source="the token you typed", kind="prompt")
    if res.found.kind == "dotenv" or res.env_holds_token:
        for w in tokens.env_file_warnings(opts.env_file):
            rep.warn(w)
    rep.redact.learn(res.found.token)
    rep.info(f"token: {res.found.source} ({secret.mask(res.found.token)})")
    return res.found


def prepare(opts: Options, rep: Reporter, endpoint: str) -> Outcome:
    """First boot of a machine (a Brev Launchable's setup script): never asks for input.

    A token from any source the full setup reads (--token-stdin, HF_TOKEN or HUGGING_FACE_HUB_TOKEN, which
    setup.sh pipes in, the .env file, the stored login): the full setup, with that one resolve. None: check
    what needs no token with an anonymous request (gated repos still answer their file list) and the disk,
    then print the next steps.
    """
    out = Outcome.begin(opts, endpoint)
    try:
        found = look_for_token(opts, rep, ask=False)
        if found is not None:
            rep.info("prepare: a token is available: continuing with the full setup")
            return online(opts, rep, endpoint, found)
        install_timeouts()
        snap = HubClient(endpoint, None, say=rep.info).snapshot(opts.model, opts.revision)
        todo, _ = _plan(opts.local_dir, manifest.load(opts.local_dir, rep.warn), snap)
        _check_disk(opts.local_dir, todo, write=False)
    except failures.Failure as failure:
        return out.failed(failure)
    total = sum(f.size for f in snap.files)
    rep.info(f"prepare: Python ready; {endpoint} reachable; {opts.model} needs {total / 1e9:.2f} GB, disk has room")
    rep.info("prepare: no token on this machine yet. Next steps, after you log in:")
    rep.info(
        f"  1. {hf_command()} auth login   (at its menu press the down arrow to 'Paste an access token', Enter, "
        "then paste a read token from https://huggingface.co/settings/tokens)"
    )
    rep.info(f"  2. bash {PROJECT_DIR / 'setup.sh'}")
    out.commit = snap.commit
    return out.done("needs_token")


def hf_command() -> str:
    """`hf` when it is on PATH; else the one in this interpreter's environment (setup.sh's .venv has it)."""
    if shutil.which("hf"):
        return "hf"
    beside = Path(sys.executable).parent / "hf"
    return str(beside) if beside.exists() else "hf"


def online(opts: Options, rep: Reporter, endpoint: str, found: tokens.Found | None = None) -> Outcome:
    """Token → whoami and access → plan → transfer → manifest. Every fact found goes into the outcome as it
    is learnt, so that a refusal still reports who was refused, for which commit. `found`: the token, when
    the caller (--prepare) already resolved it."""
    out = Outcome.begin(opts, endpoint)
    try:
        found = found or find_token(opts, rep)
        out.token_source = found.kind
        install_timeouts()
        client = HubClient(endpoint, found.token, found.source, say=rep.info)
        previous = manifest.load(opts.local_dir, rep.warn)

        # A complete copy of some commit is on disk: one request tells whether it is the wanted one.
        if previous is not None and not opts.check and not manifest.missing(opts.local_dir, previous):
            snap = client.snapshot(opts.model, opts.revision)
            if previous.commit == snap.commit and previous.model == opts.model:
                # The copy is trusted; the token was not asked who it is, so no user is reported.
                out.commit, out.files = snap.commit, [_file_doc(e) for e in previous.files]
                rep.info(
                    f"up to date: {opts.model}@{snap.commit[:10]} is complete and verified in {opts.local_dir} "
                    "(the token's access was not checked again: `bash setup.sh --check` does)"
                )
                if opts.also_cache:
                    out.hf_cache_snapshot = _also_cache(opts, rep, snap)
                return out.done()
        who, snap = identify(client, found, opts.model, opts.revision, rep)
        out.user, out.token_role, out.commit = (who.name, who.role, snap.commit) if who else (None, None, snap.commit)
        permit(client, opts.model, who, snap, rep)
        out.access_checked = True

        _check_layout(snap)
        todo, kept = _plan(opts.local_dir, previous, snap)
        _check_disk(opts.local_dir, todo, write=not opts.check)
        if opts.check:
            out.local_complete = not todo
            total = sum(f.size for f in todo)
            rep.info(
                "check: the local copy is complete"
                if not todo
                else f"check: a download of {len(todo)} file(s), {total / 1e6:.1f} MB, would succeed"
            )
            return out.done("ready" if not todo else "would_download")
        end_of_phase()
        fetched, traffic = _transfer(opts, rep, client, snap, todo)
        entries = sorted(kept + fetched, key=lambda e: e.path)
        user = out.user or ""
        m = manifest.Manifest(opts.model, opts.revision, snap.commit, secret.redact(endpoint), user, entries)
        manifest.save(opts.local_dir, m)
        zero = {"fetched_bytes": 0, "resumed_from": 0}
        out.files = [dict(_file_doc(e), **traffic.get(e.path, zero)) for e in entries]
        size = sum(e.size for e in entries)
        rep.info(
            f"ready: {len(entries)} files, {size / 1e6:.1f} MB, {opts.model}@{snap.commit[:10]} "
            f"verified in {opts.local_dir}" + (f" (user {user})" if user else "") + _reuse_summary(entries, traffic)
        )
        if opts.also_cache:
            out.hf_cache_snapshot = _also_cache(opts, rep, snap)
        return out.done()
    except failures.Failure as failure:
        return out.failed(failure)


def _reuse_summary(entries: list[manifest.FileEntry], traffic: dict[str, dict[str, int]]) -> str:
    """"; 3.6 GB reused from the Hugging Face cache, 0 B downloaded" when this run reused anything."""
    from . import reuse
    reused = {source: 0 for source in reuse.WHERE}
    for e in entries:
        if e.path in traffic and e.source in reused:
            reused[e.source] += e.size
    if not any(reused.values()):
        return ""
    parts = [f"{human_bytes(n)} reused from {reuse.WHERE[source]}" for source, n in reused.items() if n]
    downloaded = sum(t["fetched_bytes"] for t in traffic.values())
    return "; " + ", ".join(parts) + f", {human_bytes(downloaded)} downloaded"


def _also_cache(opts: Options, rep: Reporter, snap: Snapshot) -> str | None:
    """File the model into huggingface_hub's cache too; the snapshot folder, when every file is in it."""
    from . import hf_cache
    filed = hf_cache.also_cache(snap, opts.local_dir, opts.link, rep.info)
    for note in filed.notes:
        rep.warn(note)
    rep.info(filed.summary(human_bytes(filed.written)))
    return str(filed.snapshot) if filed.snapshot else None


def identify(
    client: HubClient, found: tokens.Found, model: str, revision: str, rep: Reporter
) -> tuple[Identity | None, Snapshot]:
    """Who the token is and what the revision holds (exit 4 for a token the Hub refuses, 6, 7)."""
    # whoami and the revision's listing do not depend on each other: ask both at once (one round trip less).
    # whoami's verdict comes first: an invalid token is the cause to name even when the listing failed too.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatedfetch-snapshot") as pool:
        listing = pool.submit(client.snapshot, model, revision)
        try:
            who = client.whoami(switch_hint(found))
        except BaseException:
            listing.cancel()
            raise
        snap = listing.result()
    _report_identity(who, rep, client)
    if found.kind == "prompt" and prompt.ask_yes("Save this token as your stored login (like `hf auth login`)?"):
        rep.info(f"token: saved as the stored login in {prompt.save_login(found.token)} (mode 0600)")
    for note in snap.notes:
        rep.warn(note)
    return who, snap


def permit(client: HubClient, model: str, who: Identity | None, snap: Snapshot, rep: Reporter) -> None:
    """Whether this token may read the gated repo; raises the precise refusal (exit 5)."""
    for note in client.check_access(model, snap, who):
        rep.warn(note)
    rep.info(f"access: granted to {who.name if who else 'this token'} for {model}@{snap.commit[:10]}")


def authorize(
    client: HubClient, found: tokens.Found, model: str, revision: str, rep: Reporter
) -> tuple[Identity | None, Snapshot]:
    """The one authorization step, for callers that need no facts on the way (the Jobs launcher)."""
    who, snap = identify(client, found, model, revision, rep)
    permit(client, model, who, snap, rep)
    return who, snap


def switch_hint(found: tokens.Found) -> str:
    if found.kind == "env":
        var = found.variable or "HF_TOKEN"
        return f"{var} wins over `hf auth login`: `unset {var}` to use the stored login instead"
    if found.kind == "stored":
        return "run `hf auth login --force` to store a new token"
    if found.kind == "dotenv":
        return "put the new token in the .env file"
    return ""


def _report_identity(who: Identity | None, rep: Reporter, client: HubClient) -> None:
    if who is None:
        rep.warn(f"{client.endpoint} has no whoami: the token could not be checked before the access check")
        return
    rep.info(f"user: {who.name} (token role: {who.role})")
    if who.role in ("write", "admin"):
        rep.warn(
            f"this token can {who.role}; a read token is enough for downloads "
            f"(least privilege: make one at {failures.TOKENS_PAGE})"
        )


def _plan(
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


def _check_layout(snap: Snapshot) -> None:
    """Before any byte: every listed path can land in the folder beside the others (exit 8 names the pair)."""
    from .transfer import safe_dest
    files = {f.path for f in snap.files}
    for path in sorted(files):
        safe_dest(Path("."), path)  # no absolute path, no '..'
        top = path.split("/", 1)[0]
        if top == manifest.WORK_DIR:
            raise failures.state_clash(path, manifest.WORK_DIR)
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in files:
                raise failures.layout_clash(parent, path, f"{parent!r} cannot be both a file and a folder")


def _check_disk(local_dir: Path, todo: list[RepoFile], *, write: bool = True) -> None:
    """Room and write access for what is to be fetched. With write=False (--check, --prepare) nothing is
    created: the nearest folder that exists must let us create the rest."""
    from . import reuse
    from .transfer import partial_bytes

    work = manifest.work_dir(local_dir)
    needed = 0
    for f in todo:
        if reuse.in_place(local_dir, f):
            continue  # verified and kept before any byte is fetched (see reuse.py); a mismatch is worth one file
        key = f.sha256 or f.blob_sha1
        needed += max(0, f.size - (partial_bytes(work, key, f.size) if key else 0))
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


def _transfer(
    opts: Options, rep: Reporter, client: HubClient, snap: Snapshot, todo: list[RepoFile]
) -> tuple[list[manifest.FileEntry], dict[str, dict[str, int]]]:
    """Reuse verified local copies, fetch and verify the rest; return the manifest entries and, per file,
    the bytes fetched and resumed."""
    # Imported here, as the other transfer pieces: the up-to-date path (a re-run) never needs them.
    from huggingface_hub.utils import are_progress_bars_disabled

    from . import reuse
    from .progress import make_progress
    from .transfer import HttpRefused, RemoteFile, fetch_all

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
    try:
        results = fetch_all(
            remote,
            opts.local_dir,
            work,
            client.headers(),
            progress=progress,
            endpoint=client.endpoint,
            connections=opts.connections,
        )
    except HttpRefused as exc:
        raise client.classify_status(exc.status, exc.headers, snap.repo, snap.revision) from None
    finally:
        progress.close()
    for r in results:
        traffic[r.path] = {"fetched_bytes": r.fetched_bytes, "resumed_from": r.resumed_from}
        source = r.source or (reuse.PARTIAL if r.resumed_from else reuse.DOWNLOAD)
        entry = manifest.FileEntry(r.path, r.size, r.sha256, r.verified, source=source)
        entries.append(manifest.stamp(opts.local_dir, entry))
        if r.resumed_from:
            rep.info(f"{r.path}: resumed from {r.resumed_from / 1e6:.1f} MB")
        if not r.verified:
            rep.warn(f"{r.path}: the hub gave no hash for it; size checked, content not verified")
        for note in r.notes:
            rep.warn(note)
    return entries, traffic


def _file_doc(e: manifest.FileEntry) -> dict[str, object]:
    return {"path": e.path, "size": e.size, "sha256": e.sha256, "verified": e.verified, "source": e.source}
