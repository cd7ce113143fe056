"""The failure classes: one per exit code, with the kind `--json` names and the meaning `--help` prints."""

from __future__ import annotations

from typing import Any, ClassVar

TOKENS_PAGE = "https://huggingface.co/settings/tokens"
GATED_TOKEN_PAGE = "https://huggingface.co/settings/tokens/new?canReadGatedRepos=true&tokenType=fineGrained"
GATED_PERMISSION = "Read access to contents of all public gated repos you can access"
DEBUG_VARIABLE = "GATEDFETCH_DEBUG"
ISSUES_HINT = f"re-run with {DEBUG_VARIABLE}=1 for a traceback (tokens masked) and report it with that output"


class Failure(Exception):
    """A failure the user can act on. `message` names the cause, `fix` the next command."""

    exit_code: ClassVar[int] = 1
    kind: ClassVar[str] = "unexpected"
    meaning: ClassVar[str] = ""  # what the exit code means, for --help and the README's table

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


class Unexpected(Failure):
    exit_code = 1
    kind = "unexpected"
    meaning = "unexpected error (a bug): " + ISSUES_HINT


class UsageError(Failure):
    exit_code = 2
    kind = "usage"
    meaning = "usage error: a bad flag or value"


class NoToken(Failure):
    exit_code = 3
    kind = "no_token"
    meaning = "no token found"


class TokenRejected(Failure):
    exit_code = 4
    kind = "token_rejected"
    meaning = "token rejected: invalid, expired, revoked, malformed or a placeholder"


class AccessDenied(Failure):
    exit_code = 5
    kind = "access_denied"
    meaning = "gated access not granted: licence not accepted, request pending or rejected, or token lacks permission"


class NotFound(Failure):
    exit_code = 6
    kind = "not_found"
    meaning = "repository or revision not found"


class HubUnreachable(Failure):
    exit_code = 7
    kind = "hub_unreachable"
    meaning = "hub unreachable, or failing after retries (also: offline and the local copy is incomplete)"


class IntegrityFailure(Failure):
    exit_code = 8
    kind = "integrity"
    meaning = "download or integrity failure"


class DiskFailure(Failure):
    exit_code = 9
    kind = "disk"
    meaning = "local disk: no space, or the folder is not writable"


EXIT_MEANINGS: dict[int, str] = {
    0: "ready: the model is on disk and verified (or, with --check, a download would succeed)",
    **{kind.exit_code: kind.meaning for kind in sorted(Failure.__subclasses__(), key=lambda k: k.exit_code)},
}


