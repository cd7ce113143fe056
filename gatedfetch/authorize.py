"""Who the token is and whether it may read the repo: the token found (and said by source and mask), whoami and
the revision's listing side by side, then the gated-access check. The setup and the Jobs launcher both call it."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import failures, prompt, secret, tokens
from .options import Options
from .repo import Identity, Snapshot
from .report import Reporter

if TYPE_CHECKING:
    from .hub_client import HubClient


def find_token(opts: Options, rep: Reporter) -> tokens.Found:
    """The token from the first source that has one; with none, asked for on a terminal, else NoToken (exit 3)."""
    found = look_for_token(opts, rep, ask=True)
    assert found is not None  # with ask=True a missing token raises
    return found


def look_for_token(opts: Options, rep: Reporter, *, ask: bool) -> tokens.Found | None:
    """The token from the first source that has one, said by source and mask. With nothing found: ask on a
    terminal when `ask` (else a NoToken failure); with `ask=False` (--prepare), None."""
    stdin_value = tokens.read_stdin() if opts.token_stdin else None
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


class Checks:
    """whoami, the revision's listing and the access check: none needs another's answer, so all three are asked at
    once (one round trip, not three) and judged in order, whoami's verdict first: an invalid token is the cause to
    name even when the others failed too. Use as a context manager; `identify`, then `permit`."""

    def __init__(self, client: HubClient, found: tokens.Found, model: str, revision: str) -> None:
        self.client, self.found, self.model = client, found, model
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gatedfetch-check")
        self._listing = self._pool.submit(client.snapshot, model, revision)
        self._access: Future[BaseException | None] = self._pool.submit(client.ask_access, model)

    def __enter__(self) -> Checks:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)  # each request is bounded (bounded.py)

    def identify(self, rep: Reporter) -> tuple[Identity | None, Snapshot]:
        """Who the token is and what the revision holds (exit 4 for a token the Hub refuses, 6, 7)."""
        who = self.client.whoami(switch_hint(self.found))
        snap = self._listing.result()
        _report_identity(who, rep, self.client)
        found = self.found
        if found.kind == "prompt" and prompt.ask_yes("Save this token as your stored login (like `hf auth login`)?"):
            rep.info(f"token: saved as the stored login in {prompt.save_login(found.token)} (mode 0600)")
        for note in snap.notes:
            rep.warn(note)
        return who, snap

    def permit(self, who: Identity | None, snap: Snapshot, rep: Reporter) -> None:
        """Whether this token may read the gated repo; raises the precise refusal (exit 5)."""
        for note in self.client.check_access(self.model, snap, who, self._access):
            rep.warn(note)
        rep.info(f"access: granted to {who.name if who else 'this token'} for {self.model}@{snap.commit[:10]}")


def authorize(
    client: HubClient, found: tokens.Found, model: str, revision: str, rep: Reporter
) -> tuple[Identity | None, Snapshot]:
    """The one authorization step, for callers that need no facts on the way (the Jobs launcher)."""
    with Checks(client, found, model, revision) as checks:
        who, snap = checks.identify(rep)
        checks.permit(who, snap, rep)
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

