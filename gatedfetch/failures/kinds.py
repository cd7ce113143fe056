"""The failure classes: one per exit code, with the kind `--json` names and the meaning `--help` prints."""

from __future__ import annotations

from typing import Any, ClassVar

TOKENS_PAGE = "https://huggingface.co/settings/tokens"
GATED_TOKEN_PAGE = "https://huggingface.co/settings/tokens/new?canReadGatedRepos=true&tokenType=fineGrained"
GATED_PERMISSION = "Read access to contents of all public gated repos you can access"
DEBUG_VARIABLE = "GATEDFETCH_DEBUG"
ISSUES_HINT = f"re-run with {DEBUG_VARIABLE}=1 for a traceback (tokens masked) and report it with that output"


# The one exit-code table: code -> (the kind --json names, what --help and the README say it means).
KINDS: dict[int, tuple[str, str]] = {
    1: ("unexpected", "unexpected error (a bug): " + ISSUES_HINT),
    2: ("usage", "usage error: a bad flag or value"),
    3: ("no_token", "no token found"),
    4: ("token_rejected", "token rejected: invalid, expired, revoked, malformed or a placeholder"),
    5: (
        "access_denied",
        "gated access not granted: licence not accepted, request pending or rejected, or token lacks permission",
    ),
    6: ("not_found", "repository or revision not found"),
    7: (
        "hub_unreachable",
        "hub unreachable, or failing after retries (also: offline and the local copy is incomplete)",
    ),
    8: ("integrity", "download or integrity failure"),
    9: ("disk", "local disk: no space, or the folder is not writable"),
}


class Failure(Exception):
    """A failure the user can act on. `message` names the cause, `fix` the next command."""

    exit_code: ClassVar[int] = 1
    kind: ClassVar[str] = "unexpected"
    meaning: ClassVar[str] = ""  # what the exit code means, for --help and the README's table

    def __init_subclass__(cls, *, exit_code: int, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.exit_code = exit_code
        cls.kind, cls.meaning = KINDS[exit_code]

    def __init__(self, message: str, fix: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message, "fix": self.fix}
        if self.details:
            out["details"] = self.details
        return out


class Unexpected(Failure, exit_code=1): ...
class UsageError(Failure, exit_code=2): ...
class NoToken(Failure, exit_code=3): ...
class TokenRejected(Failure, exit_code=4): ...
class AccessDenied(Failure, exit_code=5): ...
class NotFound(Failure, exit_code=6): ...
class HubUnreachable(Failure, exit_code=7): ...
class IntegrityFailure(Failure, exit_code=8): ...
class DiskFailure(Failure, exit_code=9): ...


EXIT_MEANINGS: dict[int, str] = {
    0: "ready: the model is on disk and verified (or, with --check, a download would succeed)",
    **{code: meaning for code, (_, meaning) in sorted(KINDS.items())},
}


