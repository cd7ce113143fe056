"""What the Hub says: who the token belongs to, whether it may read the repo, and what the revision holds.

Everything goes through huggingface_hub's public API (HfApi, its errors, its HTTP session); this
module only turns the answers into plain values or into the project's failures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from . import failures
from .bounded import PHASE_ATTEMPTS, Deadline, read_timeout, speaking
from .repo import Identity, RepoFile, Snapshot
from .secret import mask
from .settings import current

T = TypeVar("T")

__all__ = ["HubClient", "Identity", "RepoFile", "Snapshot"]  # the values are repo.py's, named here too


class HubClient:
    """This side of the wire: huggingface_hub's client, asking one Hub (or mirror) with one token."""

    def __init__(
        self,
        endpoint: str,
        token: str | None,
        source: str = "",
        *,
        retries: int = PHASE_ATTEMPTS,
        backoff: float | None = None,
        say: Callable[[str], None] | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.source = source or "the token"
        self.masked = mask(token) if token else ""
        self.api = HfApi(endpoint=self.endpoint, token=token if token else False)
        self.retries = retries
        self.backoff = current().hub_backoff if backoff is None else backoff
        self.say = say
        self.deadline = deadline  # the checks' deadline (bounded.install_timeouts); None: per-request bounds only
        self.last_cause = ""

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Retry transient trouble (connection errors, timeouts, 5xx, 429) a few times, then exit 7 with the cause.

        A wait longer than `speak_after` (gatedfetch.settings) prints a line: a slow hub is never a silent one.
        """
        delay = self.backoff
        host = _host(self.endpoint)
        limited: float | None = None
        for attempt in range(1, self.retries + 1):
            left = self._left()
            if left is not None and left <= 0:
                break
            try:
                with speaking(self.say, f"{what} from {host}", attempt, self.retries):
                    return fn()
            except HfHubHTTPError as exc:
                status, headers = _answer(exc)
                if status < 500 and status not in (408, 429):
                    raise
                self.last_cause = f"HTTP {status} from {host}"
                retry_after = _retry_after(headers)
                limited = (retry_after or 0.0) if status == 429 else None
            except (httpx2.TransportError, OSError) as exc:
                self.last_cause = _describe_transport(exc)
                retry_after = None
                limited = None
            if attempt < self.retries:
                pause = min(retry_after if retry_after is not None else delay, current().hub_pause_cap)
                if self.say and (pause >= 1.0 or "timed out" in self.last_cause):
                    nxt = f"attempt {attempt + 1} of {self.retries} in {pause:.0f} s"
                    self.say(f"hub: {what}: {self.last_cause}; {nxt}")
                time.sleep(pause)
                delay *= 2
        if limited is not None:
            raise failures.rate_limited(self.endpoint, what, limited, bool(self.token))
        left = self._left()
        if self.deadline is not None and left is not None and left <= 0:
            raise failures.hub_unreachable(
                self.endpoint,
                f"no complete answer for {what} within the {self.deadline.seconds:.0f} s allowed for the checks "
                f"before the download (last: {self.last_cause})",
            )
        raise failures.hub_unreachable(self.endpoint, f"{what}: {self.last_cause} (after {self.retries} attempts)")

    def _left(self) -> float | None:
        return self.deadline.left() if self.deadline is not None else None

    def headers(self) -> dict[str, str]:
        return dict(build_hf_headers(token=self.token if self.token else False))

    def file_url(self, repo: str, commit: str, path: str) -> str:
        return hf_hub_url(repo, path, revision=commit, endpoint=self.endpoint)

    # -- whoami -----------------------------------------------------------------------------

    def whoami(self, switch_hint: str = "") -> Identity | None:
        """The token's owner and role; None when the endpoint has no whoami (a download-only mirror)."""
        assert self.token
        token = self.token
        try:
            info = self._call("whoami (the token's owner)", lambda: self.api.whoami(token=token))
        except HfHubHTTPError as exc:
            status, _ = _answer(exc)
            if status == 401:
                raise failures.token_invalid(self.source, self.masked, switch_hint) from None
            if status in (404, 405, 501):
                return None
            raise self.refused("whoami (the token's owner)", status, _answer(exc)[1]) from None
        access = (info.get("auth") or {}).get("accessToken") or {}
        role = str(access.get("role") or "unknown")
        fine = access.get("fineGrained") or {}
        scoped: list[str] = []
        for entry in fine.get("scoped") or []:
            entity = (entry or {}).get("entity") or {}
            perms = entry.get("permissions") or []
            if any(str(p).startswith("repo.content.read") for p in perms) and entity.get("name"):
                scoped.append(str(entity["name"]))
        can_gated = fine.get("canReadGatedRepos") if role == "fineGrained" else None
        return Identity(
            name=str(info.get("name") or "unknown"),
            role=role,
            can_read_gated=None if can_gated is None else bool(can_gated),
            scoped=tuple(scoped),
        )

    # -- the revision -----------------------------------------------------------------------

    def snapshot(self, repo: str, revision: str) -> Snapshot:
        """Resolve the revision to a commit and list its files with sizes and the Hub's hashes (one request)."""
        try:
            info = self._call(
                f"the file list of {repo}@{revision}",
                lambda: self.api.model_info(
                    repo, revision=revision, files_metadata=True, token=self._tok(), timeout=read_timeout()
                ),
            )
        except HfHubHTTPError as exc:
            raise self.classify(exc, repo, revision) from None
        if not info.sha:
            raise failures.hub_unreachable(self.endpoint, f"the hub gave no commit for {repo}@{revision}")
        notes: list[str] = []
        files: list[RepoFile] = []
        siblings = info.siblings or []
        if siblings and all(s.size is not None for s in siblings):
            for s in siblings:
                sha256 = s.lfs.sha256 if s.lfs else None
                files.append(RepoFile(s.rfilename, int(s.size or 0), sha256, None if sha256 else s.blob_id))
        else:
            files = self._tree_files(repo, info.sha)
            notes.append("the endpoint gave no file sizes with the repo info; listed the tree instead")
        return Snapshot(repo, revision, info.sha, bool(info.gated), sorted(files, key=lambda f: f.path), notes)

    def _tree_files(self, repo: str, commit: str) -> list[RepoFile]:
        from huggingface_hub.hf_api import RepoFile as HfRepoFile

        try:
            entries = self._call(
                f"the file tree of {repo}",
                lambda: list(self.api.list_repo_tree(repo, revision=commit, recursive=True, token=self._tok())),
            )
        except HfHubHTTPError as exc:
            raise self.classify(exc, repo, commit) from None
        out = []
        for e in entries:
            if isinstance(e, HfRepoFile):
                sha256 = e.lfs.sha256 if e.lfs else None
                out.append(RepoFile(e.path, e.size, sha256, None if sha256 else e.blob_id))
        return out

    def _tok(self) -> str | bool:
        return self.token if self.token else False

    # -- access -----------------------------------------------------------------------------

    def ask_access(self, repo: str) -> BaseException | None:
        """The access check's answer (None: granted), asked before it is judged: side by side with whoami and the
        listing, so the three cost one round trip (`check_access` judges it once who and what are known)."""
        try:
            self._call(f"the access check for {repo}", lambda: self.api.auth_check(repo, token=self._tok()))
        except (HfHubHTTPError, failures.Failure) as exc:
            return exc
        return None

    def check_access(
        self, repo: str, snap: Snapshot, who: Identity | None, answer: Future[BaseException | None] | None = None
    ) -> list[str]:
        """Raise the precise refusal, or return notes on what could not be checked. `answer`: the access check
        already asked (`ask_access`); else it is asked now."""
        user = who.name if who else "this token's user"
        if (
            snap.gated
            and who is not None
            and who.can_read_gated is False
            and repo.split("/")[0] not in who.scoped
            and repo not in who.scoped
        ):
            raise failures.gated_token_permission(repo, user)
        refused = answer.result() if answer is not None else self.ask_access(repo)
        try:
            if refused is not None:
                raise refused
            return []
        except GatedRepoError as exc:
            raise self.classify(exc, repo, snap.revision, user) from None
        except RepositoryNotFoundError:
            # Some mirrors answer "not found" to auth-check for a repo whose info and files they serve
            # (we just read its info): fall through to the HEAD probe below.
            pass
        except HfHubHTTPError as exc:
            if _answer(exc)[0] not in (404, 405, 501):  # anything but "no such route"
                raise self.classify(exc, repo, snap.revision, user) from None
        return self._probe_access(repo, snap, user)

    def _probe_access(self, repo: str, snap: Snapshot, user: str) -> list[str]:
        """No usable auth-check: a HEAD of the smallest file tells the same (gated refusals come on /resolve)."""
        if not snap.files:
            return [f"{self.endpoint} cannot check access and the repo lists no files"]
        probe = min(snap.files, key=lambda f: f.size)
        url = self.file_url(repo, snap.commit, probe.path)

        def head() -> None:
            r = get_session().head(url, headers=self.headers(), follow_redirects=False)
            hf_raise_for_status(r)

        try:
            self._call(f"a test request for {probe.path}", head)
        except HfHubHTTPError as exc:
            raise self.classify(exc, repo, snap.revision, user) from None
        return [f"{self.endpoint} has no access check; a request for {probe.path} was answered, so access looks fine"]

    def gated_from(self, status: int, headers: Mapping[str, str], repo: str, user: str) -> failures.AccessDenied:
        message = (headers.get("x-error-message") or "").lower()
        page = failures.model_page(repo)
        if not self.token or status == 401:
            return failures.gated_no_token(repo, page)
        if "awaiting" in message and "review" in message:
            return failures.gated_pending(repo, user, page)
        if "rejected" in message:
            return failures.gated_rejected(repo, user, page)
        if "fine-grained" in message or "gated repositories in your" in message:
            return failures.gated_token_permission(repo, user)
        return failures.gated_not_accepted(repo, user, page)

    def classify(
        self, exc: HfHubHTTPError, repo: str, revision: str, user: str = "this token's user"
    ) -> failures.Failure:
        """One huggingface_hub error → one project failure."""
        status, headers = _answer(exc)
        return self.classify_status(status, headers, repo, revision, exc, user)

    def classify_status(
        self,
        status: int,
        headers: Mapping[str, str],
        repo: str,
        revision: str,
        exc: Any = None,
        user: str = "this token's user",
    ) -> failures.Failure:
        code = headers.get("x-error-code") or ""
        message = headers.get("x-error-message") or ""
        if isinstance(exc, GatedRepoError) or code == "GatedRepo":
            return self.gated_from(status, headers, repo, user)
        if isinstance(exc, RevisionNotFoundError) or code == "RevisionNotFound":
            return failures.revision_not_found(repo, revision)
        if isinstance(exc, RemoteEntryNotFoundError) or code == "EntryNotFound":
            return failures.revision_not_found(repo, revision)
        if status == 401 and (message.startswith("Invalid credentials") or not code):
            return failures.token_invalid(self.source, self.masked)
        if isinstance(exc, RepositoryNotFoundError) or code == "RepoNotFound" or status == 404:
            return failures.repo_not_found(repo, self.endpoint)
        if status == 403 and _from_hub(headers):  # a firewall's 403 is no licence question
            return failures.gated_not_accepted(repo, user, failures.model_page(repo))
        return self.refused(f"a request for {repo}@{revision}", status, headers)

    def refused(self, what: str, status: int, headers: Mapping[str, str]) -> failures.Failure:
        """An HTTP error with no more precise meaning: from something in front of the Hub (a proxy's 407, a
        firewall's 403 or 451, a 431 for an oversized header), or the Hub's own; never an unexpected error."""
        host = _host(self.endpoint)
        if 400 <= status < 500 and not _from_hub(headers):
            proxy = _proxy_variable(self.endpoint)
            return failures.refused_in_between(status, host, what, proxy, len(self.token or ""))
        return failures.hub_unreachable(self.endpoint, f"{what}: HTTP {status} from {host}")


def _answer(exc: HfHubHTTPError) -> tuple[int, Mapping[str, str]]:
    """The status and headers of the answer behind a huggingface_hub error (0 and none without one)."""
    if exc.response is None:
        return 0, {}
    return exc.response.status_code, exc.response.headers


def _from_hub(headers: Mapping[str, str]) -> bool:
    """Is this the Hub's own answer? It always carries a request id, and its errors an X-Error-* header;
    a proxy's or a firewall's refusal carries none of them."""
    names = {name.lower() for name in headers}
    return bool(names & {"x-request-id", "x-error-code", "x-error-message"})


def _proxy_variable(endpoint: str) -> str:
    """The proxy variable that applies to `endpoint` ("" when none is set)."""
    scheme = urlsplit(endpoint).scheme.lower() or "https"
    for name in (f"{scheme.upper()}_PROXY", f"{scheme}_proxy", "ALL_PROXY", "all_proxy"):
        if os.environ.get(name, "").strip():
            return name
    return ""


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _describe_transport(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "ConnectError" in type(exc).__name__:
        return f"connection refused ({type(exc).__name__})"
    if isinstance(exc, httpx2.ReadTimeout) and "deadline" not in text:
        return f"timed out: no answer within {read_timeout():.0f} s (HF_HUB_ETAG_TIMEOUT sets this wait)"
    if "timed out" in text.lower() or "Timeout" in type(exc).__name__:
        return f"timed out ({type(exc).__name__}: {text[:100]})"
    return f"{type(exc).__name__}: {text[:200]}"
