"""The one-way flow, and only the flow: find the token → ask the hub → plan → bring the files → record and report.
Each step is a module of its own (authorize, layout, acquire, manifest); this one orders them and fills the run's
`Outcome` as facts are learnt."""

from __future__ import annotations

from . import failures, manifest, secret, tokens
from .authorize import Checks, find_token, look_for_token
from .layout import check_disk, check_layout, plan
from .options import Options
from .outcome import Outcome
from .places import PROJECT_DIR, hf_command
from .report import Reporter


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
        from .bounded import install_timeouts
        from .hub_client import HubClient  # huggingface_hub: loaded where the Hub is asked through it

        deadline = install_timeouts()
        snap = HubClient(endpoint, None, say=rep.info, deadline=deadline).snapshot(opts.model, opts.revision)
        todo, _ = plan(opts.local_dir, manifest.load(opts.local_dir, rep.warn), snap)
        check_disk(opts.local_dir, todo, write=False)
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


def online(opts: Options, rep: Reporter, endpoint: str, found: tokens.Found | None = None) -> Outcome:
    """Token → whoami and access → plan → transfer → manifest. Every fact found goes into the outcome as it
    is learnt, so that a refusal still reports who was refused, for which commit. `found`: the token, when
    the caller (--prepare) already resolved it."""
    out = Outcome.begin(opts, endpoint)
    try:
        found = found or find_token(opts, rep)
        out.token_source = found.kind
        previous = manifest.load(opts.local_dir, rep.warn)
        # A complete copy of some commit is on disk: one request tells whether it is the wanted one.
        complete = previous is not None and not opts.check and not manifest.missing(opts.local_dir, previous)
        asked: str | None = None  # the commit the revision names, when the one quick request told it
        if complete and previous is not None and previous.model == opts.model and not opts.also_cache:
            from .recheck import current_commit  # the standard library only: a re-run at its floor

            asked = current_commit(endpoint, found.token, opts.model, opts.revision)
            if asked == previous.commit:
                return _up_to_date(opts, rep, out, previous)
        from .bounded import install_timeouts
        from .hub_client import HubClient  # huggingface_hub: loaded where the Hub is asked through it

        deadline = install_timeouts()
        client = HubClient(endpoint, found.token, found.source, say=rep.info, deadline=deadline)
        if complete and previous is not None and asked is None:  # no quick answer: ask through huggingface_hub
            snap = client.snapshot(opts.model, opts.revision)
            if previous.commit == snap.commit and previous.model == opts.model:
                _up_to_date(opts, rep, out, previous)
                if opts.also_cache:
                    from . import acquire  # the step that brings files: never loaded by a plain re-run

                    out.hf_cache_snapshot = acquire.also_cache(opts, rep, snap)
                return out
        with Checks(client, found, opts.model, opts.revision) as checks:
            who, snap = checks.identify(rep)
            out.user, out.token_role = (who.name, who.role) if who else (None, None)
            out.commit = snap.commit
            checks.permit(who, snap, rep)
            out.access_checked = True

        check_layout(snap)
        todo, kept = plan(opts.local_dir, previous, snap)
        check_disk(opts.local_dir, todo, write=not opts.check)
        if opts.check:
            out.local_complete = not todo
            total = sum(f.size for f in todo)
            rep.info(
                "check: the local copy is complete"
                if not todo
                else f"check: a download of {len(todo)} file(s), {total / 1e6:.1f} MB, would succeed"
            )
            return out.done("ready" if not todo else "would_download")
        deadline.end()  # the download has its own timeouts and retries
        from . import acquire  # reuse, transfer, progress: loaded only when a file must come

        rep.clock.transfer_begins()
        fetched, traffic = acquire.transfer(opts, rep, client, snap, todo)
        rep.clock.transfer_ends(sum(t["fetched_bytes"] for t in traffic.values()))
        entries = sorted(kept + fetched, key=lambda e: e.path)
        user = out.user or ""
        m = manifest.Manifest(opts.model, opts.revision, snap.commit, secret.redact(endpoint), user, entries)
        # Last, once every file it lists is durable (the transfer fsyncs each big file and copy, and all the small
        # files at once, before it returns): a kill -9 or a power cut before this line costs a re-check, never trust.
        manifest.save(opts.local_dir, m)
        zero = {"fetched_bytes": 0, "resumed_from": 0}
        out.files = [dict(_file_doc(e), **traffic.get(e.path, zero)) for e in entries]
        size = sum(e.size for e in entries)
        reused = acquire.reuse_summary(entries, traffic)
        rep.info(
            f"ready: {len(entries)} files, {size / 1e6:.1f} MB, {opts.model}@{snap.commit[:10]} "
            f"verified in {opts.local_dir}" + (f" (user {user})" if user else "") + reused
        )
        if opts.also_cache:
            out.hf_cache_snapshot = acquire.also_cache(opts, rep, snap)
        return out.done()
    except failures.Failure as failure:
        return out.failed(failure)


def _up_to_date(opts: Options, rep: Reporter, out: Outcome, previous: manifest.Manifest) -> Outcome:
    """The copy on disk is complete and of the commit the revision names: trusted as recorded. The token was not
    asked who it is, so no user is reported."""
    out.commit, out.files = previous.commit, [_file_doc(e) for e in previous.files]
    rep.info(
        f"up to date: {opts.model}@{previous.commit[:10]} is complete and verified in {opts.local_dir} "
        "(the token's access was not checked again: `bash setup.sh --check` does)"
    )
    return out.done()


def _file_doc(e: manifest.FileEntry) -> dict[str, object]:
    return {"path": e.path, "size": e.size, "sha256": e.sha256, "verified": e.verified, "source": e.source}

