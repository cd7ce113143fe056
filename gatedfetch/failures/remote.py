"""Failures the Hub or the bytes reveal: access (5), not found (6), hub unreachable (7), integrity (8),
and the local disk (9)."""

from __future__ import annotations

import os
import shlex

from ..units import shortfall
from .kinds import (
    GATED_PERMISSION,
    GATED_TOKEN_PAGE,
    TOKENS_PAGE,
    AccessDenied,
    DiskFailure,
    Failure,
    HubUnreachable,
    IntegrityFailure,
    NotFound,
    TokenRejected,
)

# --- 5: gated access ------------------------------------------------------------------------


def model_page(repo: str) -> str:
    """Licences are accepted on huggingface.co itself, also by users who download through a mirror."""
    return f"https://huggingface.co/{repo}"


# Why a gated repo refused, each with its message and fix (the Hub's X-Error-Message tells them apart).
_GATED = {
    "not_accepted": (
        "{user} has not accepted the licence of the gated model {repo}",
        "open {page} while logged in as {user}, accept the licence, then run `bash setup.sh` again",
    ),
    "pending": (
        "{user}'s access request for {repo} is awaiting a review from the repo authors",
        "wait for the authors' approval (you get an e-mail; status at {page}), then run `bash setup.sh` again",
    ),
    "rejected": (
        "{user}'s access request for {repo} was rejected by the repo authors",
        "contact the authors through {page}/discussions; another token will not help",
    ),
    "token_permission": (
        f'the fine-grained token of {{user}} lacks the permission "{GATED_PERMISSION}", needed for {{repo}}',
        f"edit the token at {TOKENS_PAGE} and tick that permission, or make one with it: {GATED_TOKEN_PAGE}",
    ),
    "anonymous": (
        "{repo} is gated and the endpoint refused the request as anonymous",
        "log in (`hf auth login`) and accept the licence at {page}",
    ),
}


def _gated(reason: str, repo: str, user: str = "", page: str = "") -> AccessDenied:
    message, fix = _GATED[reason]
    facts = {"repo": repo, "user": user, "page": page}
    return AccessDenied(message.format(**facts), fix.format(**facts), reason=reason)


def gated_not_accepted(repo: str, user: str, page: str) -> AccessDenied:
    return _gated("not_accepted", repo, user, page)


def gated_pending(repo: str, user: str, page: str) -> AccessDenied:
    return _gated("pending", repo, user, page)


def gated_rejected(repo: str, user: str, page: str) -> AccessDenied:
    return _gated("rejected", repo, user, page)


def gated_token_permission(repo: str, user: str) -> AccessDenied:
    return _gated("token_permission", repo, user)


def gated_no_token(repo: str, page: str) -> AccessDenied:
    return _gated("anonymous", repo, page=page)


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


# An answer that is not the Hub's own (none of its headers): what stands in front of it refused, by status.
_IN_BETWEEN = {
    407: "a proxy asked for a user name and password (HTTP 407 Proxy Authentication Required)",
    403: "something between this machine and the hub (a firewall or proxy) refused it (HTTP 403 Forbidden)",
    451: "something between this machine and the hub blocks it for legal reasons (HTTP 451)",
}


def refused_in_between(status: int, host: str, what: str, proxy: str, token_length: int) -> Failure:
    """An HTTP error for `what` that did not come from the Hub itself (a proxy's, a firewall's): exit 7, or 4
    for a header too large (the token is the only big one we send)."""
    if status == 431:
        return TokenRejected(
            f"{host} refused {what}: the request's headers are too large (HTTP 431); the token sent is "
            f"{token_length} characters, too long to be a Hugging Face token (they are about 40)",
            f"copy the token again from {TOKENS_PAGE} (only the hf_... value, nothing around it), "
            "then run `bash setup.sh` again",
            status=status,
        )
    via = f" ({proxy} is set)" if proxy else ""
    said = _IN_BETWEEN.get(status, f"it was refused with HTTP {status}, not by the Hub (none of its headers)")
    if status == 407:
        name = proxy or "HTTPS_PROXY"
        fix = (
            f"put the proxy's user name and password in {name}: export {name}=http://USER:PASSWORD@PROXY:PORT "
            "(ask the network's admins for them), then run `bash setup.sh` again"
        )
    elif status in (403, 451):
        fix = (
            f"ask the network's admins to allow {host}{via}, or use another network, or a mirror the network "
            "allows (HF_ENDPOINT=https://...); then run `bash setup.sh` again"
        )
    else:
        fix = (
            f"check the proxy settings{via} and HF_ENDPOINT, or try from another network; "
            "then run `bash setup.sh` again"
        )
    return HubUnreachable(f"{what} from {host}: {said}", fix, status=status)


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


def offline_other(local_dir: str, holds: str, asked: str) -> HubUnreachable:
    return HubUnreachable(
        f"HF_HUB_OFFLINE=1 and the local copy in {local_dir} holds {holds}, not {asked}",
        f"point --local-dir at a copy of {asked}, or unset HF_HUB_OFFLINE on a machine with network and run "
        "`bash setup.sh` with the same --model/--revision to fetch it",
    )


# --- 8: integrity ---------------------------------------------------------------------------


def _mismatch(path: str, what: str, expected: str | int, got: str | int, fix: str) -> IntegrityFailure:
    said = (f"{expected} bytes", got) if what == "size" else (f"{str(expected)[:12]}…", f"{str(got)[:12]}…")
    return IntegrityFailure(
        f"{path}: {what} mismatch, expected {said[0]}, got {said[1]} (the bad copy was discarded)",
        fix,
        file=path,
        expected=expected,
        got=got,
    )


def hash_mismatch(path: str, algo: str, expected: str, got: str) -> IntegrityFailure:
    fix = "run `bash setup.sh` again to fetch it anew; if it repeats, a proxy or mirror is corrupting data"
    return _mismatch(path, algo, expected, got, fix)


def size_mismatch(path: str, expected: int, got: int) -> IntegrityFailure:
    return _mismatch(path, "size", expected, got, "run `bash setup.sh` again to fetch it anew")


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
        f"not enough space in {folder}: {shortfall(needed, free)}",
        f"free some space (`df -h {shlex.quote(os.path.abspath(folder))}`), or choose a bigger disk with "
        "--local-dir DIR",
        needed=needed,
        free=free,
    )


def not_writable(folder: str, cause: str) -> DiskFailure:
    return DiskFailure(
        f"cannot write to {folder}: {cause}",
        f"see who owns it: `ls -ld {shlex.quote(os.path.abspath(folder))}`; fix its permissions, or choose "
        "another folder with --local-dir DIR",
    )
