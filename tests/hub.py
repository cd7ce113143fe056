"""A local test Hub on 127.0.0.1 that answers the real huggingface_hub client as huggingface.co does.

Routes, headers and error headers follow HUB_PROTOCOL.md: whoami-v2, auth-check, model info (by
revision, with file metadata), tree, paths-info, HEAD/GET /resolve with X-Repo-Commit, ETag,
X-Linked-Etag/X-Linked-Size, a 302 to a second server (the "CDN") for LFS files, Range, and the
X-Error-Code / X-Error-Message pairs the client maps to its exceptions. Gated repos with per-user
access states, token roles, switchable faults. Also the Jobs API (recorded).

    python tests/hub.py [--port N] [--cdn-port N] [--big-size BYTES] [--data-dir DIR]

prints one JSON line (url, cdn_url, tokens, model) and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

MODEL = "fishaudio/openaudio-s1-mini"


def _token(name: str) -> str:
    """A fake canary token: hf_ + 34 letters/digits, derived from a hash so no piece of it is in this source."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest(), "big")
    body = ""
    while len(body) < 28:
        digest, i = divmod(digest, len(alphabet))
        body += alphabet[i]
    return "hf_Canary" + body


TOKENS: dict[str, str] = {
    "accepted_read": _token("AcceptedRead"),
    "accepted_write": _token("AcceptedWrite"),
    "fine_grained_ok": _token("FineGrainedOk"),
    "fine_grained_no_gated": _token("FineGrainedNoGated"),
    "pending": _token("Pending"),
    "not_accepted": _token("NotAccepted"),
    "rejected": _token("Rejected"),
    "invalid": _token("Invalid"),
}


@dataclass(frozen=True)
class User:
    name: str
    token: str
    role: str  # read | write | fineGrained
    can_read_gated: bool = True
    orgs: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileSpec:
    path: str
    size: int
    sha256: str
    blob_sha1: str
    lfs: bool
    data_path: Path


@dataclass
class Repo:
    repo_id: str
    gated: bool | str
    commits: dict[str, dict[str, FileSpec]]  # commit sha → files
    refs: dict[str, str]  # branch/tag → commit sha

    def commit(self, revision: str) -> str:
        if revision in self.commits:
            return revision
        return self.refs[revision]

    def files(self, revision: str = "main") -> dict[str, FileSpec]:
        return self.commits[self.commit(revision)]

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(unquote(revision))


@dataclass
class World:
    repos: dict[str, Repo]
    users: dict[str, User]  # token → user
    access: dict[tuple[str, str], str]  # (user name, repo) → accepted | pending | none | rejected


@dataclass
class Fault:
    match: str
    status: int | None = None
    times: int | None = 1
    retry_after: int | None = None
    reset_after: int | None = None
    flip_at: int | None = None
    server: str = "any"
    method: str | None = None


@dataclass
class Settings:
    ignore_range: bool = False
    no_content_length: bool = False
    throttle_bps: int | None = None
    whoami: bool = True
    auth_check: str = "ok"  # ok | missing | repo_not_found
    redirect_lfs: bool = True
    mirror_gated_refusal: bool = False
    tree_page_size: int | None = None


@dataclass
class Req:
    server: str
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    bytes_sent: int = 0


def _git_blob_sha1(data_path: Path, size: int) -> str:
    h = hashlib.sha1(f"blob {size}\0".encode())
    with data_path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_file(data_dir: Path, name: str, content: bytes | None, size: int, seed: int, lfs: bool) -> FileSpec:
    path = data_dir / f"{seed}-{name}"
    if content is not None:
        size = len(content)
    if not path.exists() or path.stat().st_size != size:
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            if content is not None:
                f.write(content)
            else:
                rng = random.Random(seed)
                block = rng.randbytes(1 << 20)
                left, i = size, 0
                while left > 0:
                    # vary each MiB so that a misplaced range is detectable
                    chunk = struct.pack(">Q", i) + block[8 : min(left, len(block))]
                    f.write(chunk[: min(left, len(block))])
                    left -= min(left, len(block))
                    i += 1
        os.replace(tmp, path)
    sha256 = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            sha256.update(chunk)
    return FileSpec(name, size, sha256.hexdigest(), _git_blob_sha1(path, size), lfs, path)


def _commit_sha(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


def default_world(data_dir: Path | None = None, big_size: int = 3 * 1024 * 1024) -> World:
    data_dir = Path(data_dir or tempfile.mkdtemp(prefix="testhub-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    attrs = b"*.pth filter=lfs diff=lfs merge=lfs -text\n"
    common = {
        ".gitattributes": _write_file(data_dir, ".gitattributes", attrs, 0, 1, False),
        "README.md": _write_file(data_dir, "README.md", b"---\nlicense: cc-by-nc-sa-4.0\n---\n# OpenAudio S1 mini\n",
                                 0, 2, False),
        "special_tokens.json": _write_file(data_dir, "special_tokens.json", b'{"<|begin|>": 1}\n', 0, 3, False),
        "tokenizer.tiktoken": _write_file(data_dir, "tokenizer.tiktoken", None, 200_000, 4, False),
        "model.pth": _write_file(data_dir, "model.pth", None, big_size, 5, True),
        "codec.pth": _write_file(data_dir, "codec.pth", None, 1024 * 1024 + 123, 6, True),
    }
    new = dict(common, **{"config.json": _write_file(data_dir, "config.json", b'{"dim": 1024, "v": 2}\n', 0, 7, False)})
    old = dict(common, **{"config.json": _write_file(data_dir, "config.json", b'{"dim": 1024, "v": 1}\n', 0, 8, False)})
    main_sha, v1_sha = _commit_sha("openaudio-main"), _commit_sha("openaudio-v1.0")
    model = Repo(MODEL, "manual", {main_sha: new, v1_sha: old}, {"main": main_sha, "v1.0": v1_sha})
    tiny_sha = _commit_sha("tiny-main")
    tiny = Repo(
        "public/tiny-model",
        False,
        {tiny_sha: {"config.json": _write_file(data_dir, "tiny-config.json", b'{"tiny": true}\n', 0, 9, False)}},
        {"main": tiny_sha},
    )
    t = TOKENS
    users = [
        User("alice", t["accepted_read"], "read", orgs=("fishfans",)),
        User("alice", t["accepted_write"], "write", orgs=("fishfans",)),
        User("alice", t["fine_grained_ok"], "fineGrained", can_read_gated=True),
        User("alice", t["fine_grained_no_gated"], "fineGrained", can_read_gated=False),
        User("pat", t["pending"], "read"),
        User("nora", t["not_accepted"], "read"),
        User("rex", t["rejected"], "read"),
    ]
    access = {("alice", MODEL): "accepted", ("pat", MODEL): "pending", ("nora", MODEL): "none",
              ("rex", MODEL): "rejected"}
    return World({model.repo_id: model, tiny.repo_id: tiny}, {u.token: u for u in users}, access)


def _gated_message(state: str, repo: str, fine_grained_refusal: bool) -> str:
    if fine_grained_refusal:
        return (
            "Please enable access to public gated repositories in your fine-grained token settings "
            "to view this repository."
        )
    if state == "pending":
        return f"Your request to access model {repo} is awaiting a review from the repo authors."
    if state == "rejected":
        return f"Your request to access model {repo} has been rejected by the repo's authors."
    return (
        f"Access to model {repo} is restricted and you are not in the authorized list. "
        f"Visit https://huggingface.co/{repo} to ask for access."
    )


class _Refusal(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: str = "") -> None:
        self.status, self.headers, self.body = status, headers, body


class TestHub:
    """Two servers: the hub (API + /resolve) and the CDN (LFS bytes). Start, use `.url`, stop."""

    __test__ = False  # not a pytest class

    def __init__(self, world: World | None = None, *, port: int = 0, cdn_port: int = 0) -> None:
        self.world = world or default_world()
        self.settings = Settings()
        self.requests: list[Req] = []
        self.jobs: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ports = (port, cdn_port)
        self._servers: list[ThreadingHTTPServer] = []
        self.url = ""
        self.cdn_url = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> TestHub:
        for name, port in zip(("hub", "cdn"), self._ports, strict=True):
            server = _Server(("127.0.0.1", port), _handler_for(self, name))
            self._servers.append(server)
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()
        self._servers = []

    def __enter__(self) -> TestHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state ------------------------------------------------------------------------------

    def repo(self, repo_id: str) -> Repo:
        return self.world.repos[repo_id]

    def set_access(self, token_or_user: str, repo_id: str, state: str) -> None:
        user = self.world.users.get(token_or_user)
        name = user.name if user else token_or_user
        self.world.access[(name, repo_id)] = state

    def add_fault(self, match: str, **kwargs: Any) -> None:
        with self._lock:
            self._faults.append(Fault(match, **kwargs))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def bytes_sent(self, match: str = "") -> int:
        with self._lock:
            return sum(r.bytes_sent for r in self.requests if match in r.path)

    def take_fault(self, server: str, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.match in path and f.server in ("any", server) and (f.method is None or f.method == method):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._faults.remove(f)
                    return f
        return None

    def record(self, req: Req) -> None:
        with self._lock:
            self.requests.append(req)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def _handler_for(hub: TestHub, server_name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.hub = hub
    Handler.server_name = server_name
    return Handler


class _Handler(BaseHTTPRequestHandler):
    hub: TestHub
    server_name: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- dispatch ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self.req = Req(self.server_name, method, self.path, {k.lower(): v for k, v in self.headers.items()})
        self.hub.record(self.req)
        self.body_in = b""
        if method == "POST":
            length = int(self.headers.get("content-length") or 0)
            self.body_in = self.rfile.read(length) if length else b""
        try:
            match_path = urlsplit(self.path).path
            if self.server_name == "cdn":  # CDN paths carry the hash: let faults name the file too
                spec = self._cdn_spec()
                match_path += f" {spec.path}" if spec else ""
            fault = self.hub.take_fault(self.server_name, method, match_path)
            if fault is not None and fault.status is not None:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise _Refusal(fault.status, headers, f"injected {fault.status}")
            if self.server_name == "cdn":
                self._cdn(method, fault)
            else:
                self._hub(method, fault)
        except _Refusal as r:
            self._send_json(r.status, {"error": r.body or r.headers.get("X-Error-Message", "")}, r.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- helpers ----------------------------------------------------------------------------

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.req.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _user(self) -> User | None:
        """The token's user; None for no token; raise 401 for an unknown token (as the real Hub)."""
        auth = self.headers.get("authorization") or ""
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        user = self.hub.world.users.get(token)
        if user is None:
            raise _Refusal(401, {"X-Error-Message": "Invalid credentials in Authorization header"})
        return user

    def _repo(self, repo_id: str) -> Repo:
        repo = self.hub.world.repos.get(repo_id)
        if repo is None:
            raise _Refusal(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        return repo

    def _commit(self, repo: Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise _Refusal(
                404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {revision}"}
            )
        return sha

    def _require_read(self, repo: Repo, user: User | None) -> None:
        if not repo.gated:
            return
        if self.hub.settings.mirror_gated_refusal:
            raise _Refusal(403, {"X-Error-Code": "GatedRepo", "X-Error-Message": _gated_message("none", repo.repo_id,
                                                                                                 False)})
        if user is None:
            raise _Refusal(401, {
                "X-Error-Code": "GatedRepo",
                "X-Error-Message": f"Access to model {repo.repo_id} is restricted. You must have access to it and "
                "be authenticated to access it. Please log in.",
            })
        state = self.hub.world.access.get((user.name, repo.repo_id), "none")
        fine_refusal = user.role == "fineGrained" and not user.can_read_gated
        if state != "accepted" or fine_refusal:
            raise _Refusal(403, {"X-Error-Code": "GatedRepo",
                                 "X-Error-Message": _gated_message(state, repo.repo_id, fine_refusal)})

    # -- the hub ----------------------------------------------------------------------------

    def _hub(self, method: str, fault: Fault | None) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if path.startswith("/_test/") and method == "POST":
            return self._control(path)
        if path == "/api/whoami-v2":
            return self._whoami()
        if path.startswith("/api/jobs/"):
            return self._jobs(method, path)
        if path.startswith("/api/models/"):
            return self._api_models(method, path[len("/api/models/"):], query)
        if "/resolve/" in path:
            return self._resolve(method, path, fault)
        raise _Refusal(404, {}, "not found")

    def _control(self, path: str) -> None:
        body = json.loads(self.body_in or b"{}")
        if path == "/_test/settings":
            for k, v in body.items():
                setattr(self.hub.settings, k, v)
        elif path == "/_test/faults":
            self.hub.add_fault(**body)
        elif path == "/_test/clear":
            self.hub.clear_faults()
            self.hub.settings = Settings()
        elif path == "/_test/stats":
            pass
        else:
            raise _Refusal(404, {}, "no such control")
        self._send_json(200, {"ok": True, "bytes_sent": self.hub.bytes_sent()})

    def _whoami(self) -> None:
        if not self.hub.settings.whoami:
            raise _Refusal(404, {}, "not found")
        user = self._user()
        if user is None:
            raise _Refusal(401, {"X-Error-Message": "Invalid credentials in Authorization header"})
        token: dict[str, Any] = {"displayName": f"{user.name}-{user.role}", "role": user.role}
        if user.role == "fineGrained":
            token["fineGrained"] = {
                "canReadGatedRepos": user.can_read_gated,
                "global": ["discussion.write", "post.write"],
                "scoped": [{"entity": {"type": "user", "name": user.name}, "permissions": ["repo.content.read"]}],
            }
        self._send_json(200, {
            "type": "user",
            "id": hashlib.md5(user.name.encode()).hexdigest()[:24],
            "name": user.name,
            "fullname": user.name.title(),
            "orgs": [{"name": o, "type": "org"} for o in user.orgs],
            "auth": {"type": "access_token", "accessToken": token},
        })

    def _api_models(self, method: str, rest: str, query: dict[str, list[str]]) -> None:
        # {owner}/{name}[/revision/{rev} | /tree/{rev}[/path] | /auth-check | /paths-info/{rev} | /xet-read-token/..]
        bits = rest.split("/")
        if len(bits) < 2:
            raise _Refusal(404, {"X-Error-Code": "RepoNotFound"}, "not found")
        repo_id, tail = "/".join(bits[:2]), bits[2:]
        user = self._user()
        if tail == ["auth-check"]:
            mode = self.hub.settings.auth_check
            if mode == "missing":
                raise _Refusal(404, {}, "Not Found")
            if mode == "repo_not_found":
                raise _Refusal(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            repo = self._repo(repo_id)
            self._require_read(repo, user)
            return self._send_json(200, {"ok": True})
        repo = self._repo(repo_id)
        if not tail or tail[0] == "revision":
            revision = "/".join(tail[1:]) or "main"
            return self._info(repo, self._commit(repo, revision))
        if tail[0] == "tree" and len(tail) >= 2:
            sha = self._commit(repo, tail[1])
            prefix = "/".join(tail[2:])
            return self._tree(repo, sha, prefix, query)
        if tail[0] == "paths-info" and len(tail) >= 2 and method == "POST":
            sha = self._commit(repo, "/".join(tail[1:]))
            form = parse_qs(self.body_in.decode())
            wanted = form.get("paths", [])
            files = repo.commits[sha]
            return self._send_json(200, [self._entry(files[p]) for p in wanted if p in files])
        raise _Refusal(404, {}, "not found")

    def _entry(self, f: FileSpec) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": f.blob_sha1, "size": f.size, "path": f.path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entry["oid"] = hashlib.sha1(f"pointer {f.sha256}".encode()).hexdigest()
        return entry

    def _info(self, repo: Repo, sha: str) -> None:
        siblings = []
        for f in repo.commits[sha].values():
            e = self._entry(f)
            s: dict[str, Any] = {"rfilename": f.path, "size": f.size, "blobId": e["oid"]}
            if f.lfs:
                s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(s)
        self._send_json(200, {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "private": False,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "createdAt": "2025-06-01T00:00:00.000Z",
        })

    def _tree(self, repo: Repo, sha: str, prefix: str, query: dict[str, list[str]]) -> None:
        entries = [self._entry(f) for p, f in sorted(repo.commits[sha].items()) if p.startswith(prefix)]
        page = self.hub.settings.tree_page_size
        headers: dict[str, str] = {}
        if page:
            start = int((query.get("cursor") or ["0"])[0])
            if start + page < len(entries):
                nxt = f"{self.hub.url}/api/models/{repo.repo_id}/tree/{sha}?recursive=true&cursor={start + page}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            entries = entries[start : start + page]
        self._send_json(200, entries, headers)

    def _jobs(self, method: str, path: str) -> None:
        user = self._user()
        if user is None:
            raise _Refusal(401, {"X-Error-Message": "Invalid credentials in Authorization header"})
        job_id = hashlib.sha1(f"{time.time()}{len(self.hub.jobs)}".encode()).hexdigest()[:24]
        if method == "POST":
            body = json.loads(self.body_in or b"{}")
            self.hub.jobs.append({"path": path, "body": body, "authorization": self.headers.get("authorization", "")})
        else:
            body = {}
        namespace = path.split("/")[3] if len(path.split("/")) > 3 else user.name
        self._send_json(200, {
            "id": job_id,
            "createdAt": "2026-11-22T00:00:00.000Z",
            "dockerImage": body.get("dockerImage"),
            "spaceId": body.get("spaceId"),
            "command": body.get("command", []),
            "arguments": body.get("arguments", []),
            "environment": body.get("environment", {}),
            "secrets": sorted((body.get("secrets") or {}).keys()),
            "flavor": body.get("flavor", "cpu-basic"),
            "status": {"stage": "RUNNING", "message": None},
            "owner": {"id": "1", "name": namespace, "type": "user"},
        })

    # -- files ------------------------------------------------------------------------------

    def _locate(self, path: str) -> tuple[Repo, str, FileSpec]:
        # /{owner}/{name}/resolve/{rev}/{path...}; the revision may be URL-encoded (a/b → a%2Fb)
        before, _, after = path.partition("/resolve/")
        repo = self._repo(before.strip("/"))
        rev, _, file_path = after.partition("/")
        sha = self._commit(repo, rev)
        spec = repo.commits[sha].get(file_path)
        if spec is None:
            raise _Refusal(404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
        return repo, sha, spec

    def _resolve(self, method: str, path: str, fault: Fault | None) -> None:
        user = self._user()
        repo, sha, spec = self._locate(path)
        self._require_read(repo, user)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{spec.blob_sha1}"', "Accept-Ranges": "bytes"}
        if spec.lfs:
            headers["X-Linked-Etag"] = f'"{spec.sha256}"'
            headers["X-Linked-Size"] = str(spec.size)
            headers["ETag"] = f'"{spec.sha256}"'
            if self.hub.settings.redirect_lfs:
                # A signed, expiring CDN URL, as the real Hub gives (the query is a credential of its own).
                location = (
                    f"{self.hub.cdn_url}/repos/{quote(repo.repo_id)}/{spec.sha256}?Expires=9999999999&Signature=abc"
                )
                self.req.status = 302
                self.send_response(302)
                self.send_header("Location", location)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self._serve_file(method, spec, headers, fault)

    def _cdn_spec(self) -> FileSpec | None:
        sha = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        for repo in self.hub.world.repos.values():
            for files in repo.commits.values():
                for spec in files.values():
                    if spec.lfs and spec.sha256 == sha:
                        return spec
        return None

    def _cdn(self, method: str, fault: Fault | None) -> None:
        spec = self._cdn_spec()
        if spec is None:
            raise _Refusal(404, {}, "NoSuchKey")
        self._serve_file(method, spec, {"ETag": f'"{spec.sha256}"', "Accept-Ranges": "bytes"}, fault)

    def _serve_file(self, method: str, spec: FileSpec, headers: dict[str, str], fault: Fault | None) -> None:
        settings = self.hub.settings
        start, end = 0, spec.size - 1
        status = 200
        rng = self.headers.get("range")
        if rng and not settings.ignore_range and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            try:
                if a == "":
                    start, end = max(0, spec.size - int(b)), spec.size - 1
                else:
                    start = int(a)
                    end = min(int(b), spec.size - 1) if b else spec.size - 1
            except ValueError:
                start, end = 0, spec.size - 1
            if start >= spec.size or start > end:
                raise _Refusal(416, {"Content-Range": f"bytes */{spec.size}"}, "range not satisfiable")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{spec.size}"
        length = end - start + 1
        self.req.status = status
        self.send_response(status)
        headers.setdefault("Content-Type", "application/octet-stream")
        for k, v in headers.items():
            self.send_header(k, v)
        if settings.no_content_length and method == "GET":
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if method == "HEAD":
            return
        self._send_body(spec, start, length, fault)

    def _send_body(self, spec: FileSpec, start: int, length: int, fault: Fault | None) -> None:
        settings = self.hub.settings
        reset_after = fault.reset_after if fault else None
        flip_at = fault.flip_at if fault else None
        self.wfile.flush()
        sock = self.connection
        sent = 0
        with spec.data_path.open("rb") as f:
            simple = reset_after is None and flip_at is None and not settings.throttle_bps
            if simple:
                while sent < length:
                    n = sock.sendfile(f, offset=start + sent, count=length - sent)
                    if n == 0:
                        break
                    sent += n
                self.req.bytes_sent = sent
                return
            f.seek(start)
            chunk_size = 64 * 1024
            t0 = time.monotonic()
            while sent < length:
                want = min(chunk_size, length - sent)
                if reset_after is not None:
                    want = min(want, reset_after - sent)
                    if want <= 0:
                        self.req.bytes_sent = sent
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.close_connection = True
                        sock.close()
                        return
                data = bytearray(f.read(want))
                if not data:
                    break
                if flip_at is not None and start + sent <= flip_at < start + sent + len(data):
                    data[flip_at - start - sent] ^= 0xFF
                sock.sendall(data)
                sent += len(data)
                self.req.bytes_sent = sent
                if settings.throttle_bps:
                    ahead = sent / settings.throttle_bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        self.req.bytes_sent = sent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the local test Hub.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--big-size", type=int, default=3 * 1024 * 1024, help="size of model.pth in bytes")
    ap.add_argument("--data-dir", help="where the files are written (default: a temporary folder, removed on exit)")
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="testhub-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hub = TestHub(default_world(data_dir, args.big_size), port=args.port, cdn_port=args.cdn_port).start()
    print(json.dumps({"url": hub.url, "cdn_url": hub.cdn_url, "tokens": TOKENS, "model": MODEL}), flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        hub.stop()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
