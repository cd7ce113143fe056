"""Every failure class of the product: its exit code, its kind, its message and its fix.

This is the one table. Modules raise the functions below (never build messages themselves);
only the CLI entry point turns a `Failure` into output and an exit code.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path
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


class UsageError(Failure):
    exit_code = 2
    kind = "usage"


class NoToken(Failure):
    exit_code = 3
    kind = "no_token"


class TokenRejected(Failure):
    exit_code = 4
    kind = "token_rejected"


class AccessDenied(Failure):
    exit_code = 5
    kind = "access_denied"


class NotFound(Failure):
    exit_code = 6
    kind = "not_found"


class HubUnreachable(Failure):
    exit_code = 7
    kind = "hub_unreachable"


class IntegrityFailure(Failure):
    exit_code = 8
    kind = "integrity"


class DiskFailure(Failure):
    exit_code = 9
    kind = "disk"


EXIT_CODES: tuple[type[Failure], ...] = (
    Unexpected,
    UsageError,
    NoToken,
    TokenRejected,
    AccessDenied,
    NotFound,
    HubUnreachable,
    IntegrityFailure,
    DiskFailure,
)

EXIT_MEANINGS: dict[int, str] = {
    0: "ready: the model is on disk and verified (or, with --check, a download would succeed)",
    1: "unexpected error (a bug): " + ISSUES_HINT,
    2: "usage error: a bad flag or value",
    3: "no token found",
    4: "token rejected: invalid, expired, revoked, malformed or a placeholder",
    5: "gated access not granted: licence not accepted, request pending or rejected, or token lacks permission",
    6: "repository or revision not found",
    7: "hub unreachable, or failing after retries (also: offline and the local copy is incomplete)",
    8: "download or integrity failure",
    9: "local disk: no space, or the folder is not writable",
}


# --- 1: unexpected --------------------------------------------------------------------------


def unexpected(exc: BaseException, debug: bool = False) -> Unexpected:
    hint = "report it with the traceback above (tokens in it are masked)" if debug else ISSUES_HINT
    return Unexpected(f"unexpected error: {type(exc).__name__}", hint)


# --- 2: usage -------------------------------------------------------------------------------


def usage(problem: str, fix: str = "run `bash setup.sh --help` for every flag") -> UsageError:
    return UsageError(problem, fix)


def missing_module(python: str, module: str | None, requirements: str) -> Unexpected:
    return Unexpected(
        f"{python} lacks the module {module}",
        f"run with the project's .venv/bin/python (`bash setup.sh --check` builds it), "
        f"or `{python} -m pip install -r {requirements}`",
    )


def env_flag_not_regular(given: str, kind: str) -> UsageError:
    return UsageError(
        f"--env-file {given} is {kind}, not a regular file",
        "give a regular file holding HF_TOKEN=hf_... (a pipe or device is never read: it could block or never end); "
        "to pipe a token in, use --token-stdin",
    )


# --- 3: no token ----------------------------------------------------------------------------


def shell_path(path: str | Path) -> str:
    """A path as one shell word, absolute: a fix command must work pasted anywhere, spaces and all."""
    return shlex.quote(os.path.abspath(path))


def file_type(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISDIR: "a directory", stat.S_ISCHR: "a character device"}
    return next((name for test, name in kinds.items() if test(mode)), "a special file (a device or socket)")


def no_token(env_file: str, no_tty: bool = True) -> NoToken:
    from .options import PROJECT_DIR  # here, not at the top: options imports this module

    dotenv = shell_path(env_file)
    how = (
        "do one of these, then run `bash setup.sh` again:\n"
        "  hf auth login                (paste a read token; older installs: huggingface-cli login)\n"
        f"  export HF_TOKEN=hf_...       (a read token from {TOKENS_PAGE})\n"
        f"  cp {shell_path(PROJECT_DIR / '.env.example')} {dotenv}\n"
        f"                               (then put HF_TOKEN=hf_... in it and `chmod 600 {dotenv}`)"
    )
    why = "no Hugging Face token found (looked at --token-stdin, HF_TOKEN, " + env_file + ", the stored login)"
    if no_tty:
        why += "; not interactive (no terminal, or CI is set), so not prompting"
    return NoToken(why, how)


def env_file_unreadable(env_file: str, why: str, reason: str) -> NoToken:
    """The .env exists but was not read (`reason`: "type", "size" or "os") and no other source had a token."""
    from .options import PROJECT_DIR

    dotenv = shell_path(env_file)
    fix = {
        "type": f"move it away (`mv {dotenv} {shell_path(env_file + '.old')}`), then `cp "
        f"{shell_path(PROJECT_DIR / '.env.example')} {dotenv} && chmod 600 {dotenv}` and put HF_TOKEN=hf_... in it",
        "size": f"a .env holds a few lines: check that {dotenv} is the right file, or name a small one (--env-file)",
        "os": f"check it with `ls -l {dotenv}`; if it is yours: `chmod 600 {dotenv}`",
    }[reason]
    return NoToken(
        f"{env_file} {why}: it was not read, and no other source gave a token",
        fix + "; or give the token another way: `hf auth login`, or `export HF_TOKEN=hf_...`",
        reason=reason,
    )


def empty_stdin() -> NoToken:
    return NoToken(
        "--token-stdin was given but standard input held no token",
        "pipe the token in, e.g. `op read op://vault/hf/token | bash setup.sh --token-stdin`",
    )


# --- 4: token rejected ----------------------------------------------------------------------


def token_malformed(source: str, problem: str) -> TokenRejected:
    return TokenRejected(
        f"the token from {source} is malformed: {problem}",
        f"copy the token again from {TOKENS_PAGE} (only the hf_... value, nothing around it)",
    )


def env_file_utf16(env_file: str, encoding: str) -> TokenRejected:
    dotenv = shell_path(env_file)
    fresh = shell_path(env_file + ".utf8")
    return TokenRejected(
        f"{env_file} is saved as {encoding} (as some Windows editors and PowerShell's `>` do), not UTF-8: "
        "its HF_TOKEN cannot be read",
        f"re-save it as UTF-8: `iconv -f {encoding} -t UTF-8 {dotenv} > {fresh} && mv {fresh} {dotenv} "
        f"&& chmod 600 {dotenv}` (or in the editor: save with the encoding UTF-8)",
        encoding=encoding,
    )


def env_token_line(env_file: str, line: int, problem: str) -> TokenRejected:
    """The HF_TOKEN line of a .env holds bytes no token has (`problem` says which and where, never the value)."""
    return TokenRejected(
        f"{env_file}: line {line}, the HF_TOKEN line, {problem}",
        f"open {shell_path(env_file)} in an editor, write line {line} again as HF_TOKEN=hf_... "
        f"(copy the token from {TOKENS_PAGE}) and save it as UTF-8",
        line=line,
    )


def token_placeholder(source: str, what: str) -> TokenRejected:
    return TokenRejected(
        f"the token from {source} is a placeholder ({what}), not a real token",
        f"create a read token at {TOKENS_PAGE} and put its value there",
    )


def token_org_key(source: str) -> TokenRejected:
    return TokenRejected(
        f"the token from {source} is an organisation API key (api_org_...); those no longer work",
        f"create a user access token (read) at {TOKENS_PAGE}",
    )


def token_invalid(source: str, masked: str, switch_hint: str = "") -> TokenRejected:
    fix = f"the token may be expired or revoked: create a new read token at {TOKENS_PAGE}"
    if switch_hint:
        fix += f"; {switch_hint}"
    return TokenRejected(f"the Hub rejected the token {masked} from {source} (invalid credentials)", fix)


# --- 5: gated access ------------------------------------------------------------------------


def model_page(repo: str) -> str:
    """Licences are accepted on huggingface.co itself, also by users who download through a mirror."""
    return f"https://huggingface.co/{repo}"


def gated_not_accepted(repo: str, user: str, page: str) -> AccessDenied:
    return AccessDenied(
        f"{user} has not accepted the licence of the gated model {repo}",
        f"open {page} while logged in as {user}, accept the licence, then run `bash setup.sh` again",
        reason="not_accepted",
    )


def gated_pending(repo: str, user: str, page: str) -> AccessDenied:
    return AccessDenied(
        f"{user}'s access request for {repo} is awaiting a review from the repo authors",
        f"wait for the authors' approval (you get an e-mail; status at {page}), then run `bash setup.sh` again",
        reason="pending",
    )


def gated_rejected(repo: str, user: str, page: str) -> AccessDenied:
    return AccessDenied(
        f"{user}'s access request for {repo} was rejected by the repo authors",
        f"contact the authors through {page}/discussions; another token will not help",
        reason="rejected",
    )


def gated_token_permission(repo: str, user: str) -> AccessDenied:
    return AccessDenied(
        f"the fine-grained token of {user} lacks the permission \"{GATED_PERMISSION}\", needed for {repo}",
        f"edit the token at {TOKENS_PAGE} and tick that permission, or make one with it: {GATED_TOKEN_PAGE}",
        reason="token_permission",
    )


def gated_no_token(repo: str, page: str) -> AccessDenied:
    return AccessDenied(
        f"{repo} is gated and the endpoint refused the request as anonymous",
        f"log in (`hf auth login`) and accept the licence at {page}",
        reason="anonymous",
    )


def jobs_refused(namespace: str, status: int, said: str) -> AccessDenied:
    return AccessDenied(
        f"the Jobs API refused to start a Job in {namespace} (HTTP {status}: {said})",
        "Jobs need an account with Jobs enabled (a PRO account, or an organisation with credits) and a "
        "token that may start Jobs (a write token, or a fine-grained one with the Jobs permission): " + TOKENS_PAGE,
        reason="jobs",
    )


# --- 6: not found ---------------------------------------------------------------------------


def repo_not_found(repo: str, endpoint: str) -> NotFound:
    return NotFound(
        f"model repository '{repo}' not found at {endpoint} (or it is private to someone else)",
        "check the spelling of --model (e.g. fishaudio/openaudio-s1-mini)",
    )


def revision_not_found(repo: str, revision: str) -> NotFound:
    return NotFound(
        f"revision '{revision}' not found in {repo}",
        "check --revision: a branch (main), a tag, or a full 40-character commit id",
    )


# --- 7: hub unreachable ---------------------------------------------------------------------


def hub_unreachable(endpoint: str, cause: str) -> HubUnreachable:
    return HubUnreachable(
        f"cannot reach the hub at {endpoint}: {cause}",
        "check the network (and HF_ENDPOINT, proxy variables), then run `bash setup.sh` again; "
        "a partial download resumes where it stopped",
    )


def rate_limited(endpoint: str, what: str, retry_after: float | None, with_token: bool) -> HubUnreachable:
    wait = f"wait {retry_after:.0f} s (the hub asked for that)" if retry_after else "wait a few minutes"
    more = (
        "; many machines behind one address share a limit: a caching mirror (HF_ENDPOINT) helps a fleet"
        if with_token
        else "; requests with a token have a higher limit: `hf auth login`, then run it again"
    )
    return HubUnreachable(
        f"the hub at {endpoint} rate-limited this machine (HTTP 429) for {what}, after retries",
        f"{wait} and run `bash setup.sh` again{more}; a partial download resumes where it stopped",
    )


def jobs_unreachable(endpoint: str, namespace: str, cause: str) -> HubUnreachable:
    return HubUnreachable(
        f"the Jobs API at {endpoint} {cause}",
        f"check `hf jobs ps --namespace {namespace}` first (the Job may have started), then run this again",
    )


def offline_incomplete(local_dir: str, missing: str) -> HubUnreachable:
    return HubUnreachable(
        f"HF_HUB_OFFLINE=1 and the local copy in {local_dir} is not complete ({missing})",
        "unset HF_HUB_OFFLINE on a machine with network and run `bash setup.sh`",
    )


# --- 8: integrity ---------------------------------------------------------------------------


def hash_mismatch(path: str, algo: str, expected: str, got: str) -> IntegrityFailure:
    return IntegrityFailure(
        f"{path}: {algo} mismatch, expected {expected[:12]}… got {got[:12]}… (the bad copy was discarded)",
        "run `bash setup.sh` again to fetch it anew; if it repeats, a proxy or mirror is corrupting data",
        file=path,
        expected=expected,
        got=got,
    )


def size_mismatch(path: str, expected: int, got: int) -> IntegrityFailure:
    return IntegrityFailure(
        f"{path}: size mismatch, expected {expected} bytes, got {got} (the bad copy was discarded)",
        "run `bash setup.sh` again to fetch it anew",
        file=path,
        expected=expected,
        got=got,
    )


def unsafe_path(path: str) -> IntegrityFailure:
    return IntegrityFailure(
        f"the repository lists an unsafe file path {path!r}; refusing to write outside the folder",
        "check --model and the endpoint (HF_ENDPOINT); a mirror may be serving a tampered listing",
        file=path,
    )


def layout_clash(path: str, other: str, why: str) -> IntegrityFailure:
    return IntegrityFailure(
        f"the repository lists {path!r} and {other!r}: {why}; nothing was written",
        "check --model and the endpoint (HF_ENDPOINT): the Hub never lists such a pair, a mirror may be serving "
        "a broken listing",
        file=path,
    )


def state_clash(path: str, state: str) -> IntegrityFailure:
    return IntegrityFailure(
        f"the repository lists {path!r}, which would land in {state}/, where this tool keeps its own records; "
        "nothing was written",
        "check --model and the endpoint (HF_ENDPOINT); to get this repo anyway use `hf download` "
        "(it keeps no records in the target folder)",
        file=path,
    )


# --- 9: local disk --------------------------------------------------------------------------


def no_space(folder: str, needed: int, free: int) -> DiskFailure:
    return DiskFailure(
        f"not enough space in {folder}: {needed / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free",
        "free some space, or choose a bigger disk with --local-dir DIR",
        needed=needed,
        free=free,
    )


def not_writable(folder: str, cause: str) -> DiskFailure:
    return DiskFailure(
        f"cannot write to {folder}: {cause}",
        "fix the folder's permissions (`ls -ld` it), or choose another with --local-dir DIR",
    )
