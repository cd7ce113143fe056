"""A local test Hub on 127.0.0.1 that answers the real huggingface_hub client as huggingface.co does.

Routes, headers and error headers follow huggingface_hub 2.4's own source (`hf_api.py`,
`file_download.py`, `utils/_http.py`: the client maps errors on `X-Error-Code`, needs `X-Repo-Commit`
and an ETag on HEAD) and what the client sends on the wire against a local server: whoami-v2,
auth-check, model info (by revision, with file metadata when `blobs=true`), tree (with `Link` paging),
paths-info, HEAD/GET /resolve with X-Repo-Commit, ETag, X-Linked-Etag/X-Linked-Size, a 302 to a second
server (the "CDN", another origin, so the client drops Authorization) for LFS files, Range on both
servers, and the X-Error-Code / X-Error-Message pairs the client maps to its exceptions. Gated repos
with per-user access states, token roles, switchable faults and settings.
Its CDN behaves as users of the Hub report the real one does (2025-2026): signed URLs that expire and
are bound to the Range asked at /resolve (403 otherwise), per-connection speed caps (`throttle_bps`),
a delay before every answer (`delay_ms`), and 206 answers shorter than asked (the `short` fault).
Also the Jobs API (submissions recorded; job info and logs answered).

    python tests/hub.py [--port N] [--cdn-port N] [--big-size BYTES] [--data-dir DIR]
                        [--throttle-mbps X] [--delay-ms N]

prints one JSON line (url, cdn_url, tokens, model) and serves until SIGTERM/SIGINT. While it runs,
`POST /_test/settings` (JSON object of settings), `POST /_test/faults` (JSON kwargs of `add_fault`)
and `POST /_test/clear` (faults, settings and recorded requests back to the start) control it, from
127.0.0.1 only.

Standard library only: the CLI runs with any python3.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import hmac
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
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

MODEL = "fishaudio/openaudio-s1-mini"
TINY = "public/tiny-model"
_LFS_SPEC = "https://git-lfs.github.com/spec/v1"
_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def _token(name: str) -> str:
    """A fake canary token: `hf_Canary` + 28 letters/digits derived from a hash (37 characters, like a real one)."""
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
    "invalid": _token("Invalid"),  # known to nobody: every route answers 401
}


# -- the world ------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    token: str
    role: str  # read | write | fineGrained
    can_read_gated: bool = True  # fine-grained tokens only: "Read access to contents of all public gated repos"
    orgs: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileSpec:
    """One file of a commit. `blob_sha1` is the git blob sha1 of the content (the ETag of a regular file);
    for an LFS file the tree lists the pointer's blob sha1 instead (see `pointer`)."""

    path: str
    size: int
    sha256: str
    blob_sha1: str
    lfs: bool
    data_path: Path

    @property
    def pointer(self) -> bytes:
        return f"version {_LFS_SPEC}\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    @property
    def tree_oid(self) -> str:
        """The `oid` the Hub lists: the git blob sha1 of what git stores (the pointer, for an LFS file)."""
        if not self.lfs:
            return self.blob_sha1
        pointer = self.pointer
        return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()


@dataclass
class Repo:
    repo_id: str
    gated: bool | str  # False | "auto" | "manual"
    commits: dict[str, dict[str, FileSpec]]  # commit sha -> files
    refs: dict[str, str]  # branch/tag -> commit sha

    def resolve(self, revision: str) -> str | None:
        """The commit a revision names (a branch, a tag, or one of this repo's full commit shas), or None."""
        if revision in self.commits:
            return revision
        return self.refs.get(revision)

    def commit(self, revision: str = "main") -> str:
        sha = self.resolve(revision)
        if sha is None:
            raise KeyError(f"{self.repo_id} has no revision {revision!r}")
        return sha

    def files(self, revision: str = "main") -> dict[str, FileSpec]:
        return self.commits[self.commit(revision)]


@dataclass
class World:
    repos: dict[str, Repo]
    users: dict[str, User]  # token -> user
    access: dict[tuple[str, str], str]  # (user name, repo id) -> accepted | pending | none | rejected


@dataclass
class Fault:
    match: str
    status: int | None = None
    times: int | None = 1
    retry_after: int | None = None
    reset_after: int | None = None
    flip_at: int | None = None
    server: str = "any"  # hub | cdn | any
    method: str | None = None
    close_after: int | None = None  # like reset_after, but a clean close (FIN) instead of a reset (RST)
    short: int | None = None  # a 206 that serves only this many bytes of the range asked (headers consistent)
    silent: float | None = None  # read the request, answer nothing for this many seconds, then close
    trickle: float | None = None  # a 200 whose body comes a byte every 0.2 s for this many seconds, then a close


@dataclass
class Settings:
    ignore_range: bool = False
    no_content_length: bool = False
    throttle_bps: int | None = None  # each file answer (so each connection) sends at most this many bytes/s
    delay_ms: int = 0  # every answer waits this long first: a link's round trip and a server's think time
    cdn_url_ttl: float = 3600.0  # how long a signed CDN URL stays good
    whoami: bool = True
    auth_check: str = "ok"  # ok | missing | repo_not_found
    redirect_lfs: bool = True
    mirror_gated_refusal: bool = False
    tree_page_size: int | None = None
    listed_size_delta: dict[str, int] = dataclasses.field(default_factory=dict)  # path -> bytes the info adds

    def reset(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)


@dataclass
class Req:
    server: str  # hub | cdn
    method: str
    path: str  # with the query
    headers: dict[str, str]  # lower-case names
    status: int = 0
    bytes_sent: int = 0  # body bytes of a file response that left the server


# -- file data ------------------------------------------------------------------------------

_META_VERSION = 2


def _write_file(data_dir: Path, name: str, content: bytes | None, size: int, seed: int, lfs: bool) -> FileSpec:
    """Write a file once (fixed content, or `size` seeded pseudo-random bytes written in 1 MiB chunks), hashing
    while writing. A side file keeps the hashes so that a restart on the same data dir reads nothing."""
    path = data_dir / f"{seed}-{name}"
    meta_path = data_dir / f".{seed}-{name}.meta.json"
    if content is not None:
        size = len(content)
    want = {"version": _META_VERSION, "seed": seed, "size": size}
    try:
        meta = json.loads(meta_path.read_text())
        st = path.stat()
        if all(meta.get(k) == v for k, v in want.items()) and meta["mtime_ns"] == st.st_mtime_ns \
                and st.st_size == size:
            return FileSpec(name, size, meta["sha256"], meta["blob_sha1"], lfs, path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        if content is not None:
            chunks: Any = [content]
        else:
            chunks = _pseudo_random_chunks(seed, size)
        for chunk in chunks:
            f.write(chunk)
            sha256.update(chunk)
            sha1.update(chunk)
    os.replace(tmp, path)
    spec = FileSpec(name, size, sha256.hexdigest(), sha1.hexdigest(), lfs, path)
    meta = dict(want, sha256=spec.sha256, blob_sha1=spec.blob_sha1, mtime_ns=path.stat().st_mtime_ns)
    meta_path.write_text(json.dumps(meta))
    return spec


def _pseudo_random_chunks(seed: int, size: int) -> Any:
    """Seeded bytes: one random MiB, each copy prefixed with its index and xor-ed with a per-MiB random word,
    so that any two MiB differ and any misplaced range changes the hash."""
    rng = random.Random(seed)
    block = rng.randbytes(1 << 20)
    left, i = size, 0
    while left > 0:
        n = min(left, len(block))
        chunk = struct.pack(">QQ", i, rng.getrandbits(64)) + block[16:n]
        yield chunk[:n]
        left -= n
        i += 1


def _commit_sha(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


def default_world(data_dir: Path | str | None = None, big_size: int = 3 * 1024 * 1024) -> World:
    """The model (gated, manual), two commits (`main`, tag `v1.0`), and one ungated repo; files under data_dir."""
    data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="testhub-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    attrs = b"*.pth filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
    readme = (
        b"---\nlicense: cc-by-nc-sa-4.0\nextra_gated_prompt: You agree to the licence.\n---\n"
        b"# OpenAudio S1 mini (test copy)\n"
    )
    common = {
        ".gitattributes": _write_file(data_dir, ".gitattributes", attrs, 0, 1, False),
        "README.md": _write_file(data_dir, "README.md", readme, 0, 2, False),
        "special_tokens.json": _write_file(
            data_dir, "special_tokens.json", b'{"<|begin_of_text|>": 151643, "<|end_of_text|>": 151644}\n', 0, 3, False
        ),
        "tokenizer.tiktoken": _write_file(data_dir, "tokenizer.tiktoken", None, 200_000, 4, False),
        "model.pth": _write_file(data_dir, "model.pth", None, big_size, 5, True),
        "codec.pth": _write_file(data_dir, "codec.pth", None, 1024 * 1024 + 123, 6, True),
    }
    new = dict(common, **{"config.json": _write_file(data_dir, "config.json", b'{"dim": 1024, "v": 2}\n', 0, 7, False)})
    old = dict(common, **{"config.json": _write_file(data_dir, "config.json", b'{"dim": 1024, "v": 1}\n', 0, 8, False)})
    main_sha, v1_sha = _commit_sha("openaudio-main"), _commit_sha("openaudio-v1.0")
    model = Repo(MODEL, "manual", {main_sha: new, v1_sha: old}, {"main": main_sha, "v1.0": v1_sha})
    tiny_sha = _commit_sha("tiny-main")
    tiny_files = {
        "config.json": _write_file(data_dir, "config.json", b'{"tiny": true}\n', 0, 9, False),
        "weights.bin": _write_file(data_dir, "weights.bin", None, 64 * 1024 + 7, 10, True),
    }
    tiny = Repo(TINY, False, {tiny_sha: tiny_files}, {"main": tiny_sha})
    t = TOKENS
    users = [
        User("alice", t["accepted_read"], "read", orgs=("fishfans",)),
        User("alice", t["accepted_write"], "write", orgs=("fishfans",)),
        User("alice", t["fine_grained_ok"], "fineGrained", can_read_gated=True, orgs=("fishfans",)),
        User("alice", t["fine_grained_no_gated"], "fineGrained", can_read_gated=False, orgs=("fishfans",)),
        User("pat", t["pending"], "read"),
        User("nora", t["not_accepted"], "read"),
        User("rex", t["rejected"], "read"),
    ]
    access = {
        ("alice", MODEL): "accepted",
        ("pat", MODEL): "pending",
        ("nora", MODEL): "none",
        ("rex", MODEL): "rejected",
    }
    return World({model.repo_id: model, tiny.repo_id: tiny}, {u.token: u for u in users}, access)


def gated_message(state: str, repo: str, fine_grained_refusal: bool = False) -> str:
    """The X-Error-Message of a 403 GatedRepo, per reason."""
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


# -- the servers ----------------------------------------------------------------------------


class TestHub:
    """Two servers: the hub (API + /resolve) and the CDN (LFS bytes). Start, use `.url`, stop."""

    __test__ = False  # not a pytest class

    def __init__(self, world: World | None = None, *, port: int = 0, cdn_port: int = 0) -> None:
        if world is None:
            data_dir = tempfile.mkdtemp(prefix="testhub-")
            weakref.finalize(self, shutil.rmtree, data_dir, True)
            world = default_world(data_dir)
        self.world = world
        self.settings = Settings()
        self.requests: list[Req] = []
        self.jobs: list[dict[str, Any]] = []  # {"namespace", "body" (the parsed JSON), "authorization"}
        self._job_docs: dict[str, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ports = (port, cdn_port)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.url = ""
        self.cdn_url = ""
        self.signing_key = os.urandom(16)
        self.stopping = threading.Event()  # set by stop(): ends the waits of silent and trickling answers

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> TestHub:
        if self._servers:
            return self
        for name, port in zip(("hub", "cdn"), self._ports, strict=True):
            server = _Server(("127.0.0.1", port), _handler_for(self, name))
            self._servers.append(server)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"testhub-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        """Stop accepting, close the listening sockets and every open (keep-alive) connection."""
        servers, self._servers = self._servers, []
        self.stopping.set()
        for s in servers:
            s.shutdown()
            s.server_close()
            s.close_connections()
        for t in self._threads:
            t.join(timeout=2)
        self._threads = []

    def __enter__(self) -> TestHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state ------------------------------------------------------------------------------

    def repo(self, repo_id: str) -> Repo:
        return self.world.repos[repo_id]

    def set_access(self, token_or_user: str, repo_id: str, state: str) -> None:
        if state not in ("accepted", "pending", "none", "rejected"):
            raise ValueError(f"unknown access state {state!r}")
        user = self.world.users.get(token_or_user)
        name = user.name if user else token_or_user
        with self._lock:
            self.world.access[(name, repo_id)] = state

    def add_fault(
        self,
        match: str,
        *,
        status: int | None = None,
        times: int | None = 1,
        retry_after: int | None = None,
        reset_after: int | None = None,
        flip_at: int | None = None,
        server: str = "any",
        method: str | None = None,
        close_after: int | None = None,
        short: int | None = None,
        silent: float | None = None,
        trickle: float | None = None,
    ) -> None:
        """Make matching requests fail. `match` is a substring of the request path (with its query; on the CDN
        the file's name is matched too). `status`: answer it instead (with `Retry-After` if `retry_after`).
        `reset_after=N`: headers and N body bytes, then a reset (RST). `close_after=N`: the same with a clean
        close (FIN). `flip_at=K`: body byte K xor 0xFF. `short=N`: a 206 for only the first N bytes of the range
        asked, with matching headers (as CDN edges do). `silent=S`: accept, read, say nothing for S seconds (a hub
        that hangs). `trickle=S`: a 200 with a large Content-Length whose body comes a byte every 0.2 s for S
        seconds (no read timeout ever fires). `times=None`: forever; each matching request uses one."""
        if server not in ("hub", "cdn", "any"):
            raise ValueError(f"server must be hub, cdn or any, not {server!r}")
        fault = Fault(match, status, times, retry_after, reset_after, flip_at, server,
                      method.upper() if method else None, close_after, short, silent, trickle)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def bytes_sent(self, match: str = "") -> int:
        """File body bytes sent by both servers for requests whose path contains `match`."""
        with self._lock:
            return sum(r.bytes_sent for r in self.requests if match in r.path)

    def take_fault(self, server: str, method: str, target: str) -> Fault | None:
        """The first fault matching this request, one use consumed."""
        with self._lock:
            for f in self._faults:
                if f.match in target and f.server in ("any", server) and f.method in (None, method):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._faults.remove(f)
                    return f
        return None

    def sign(self, sha256: str, byte_range: str, expires: int) -> str:
        """The CDN URL's signature: bound to the file, the Range asked at /resolve ("" = any) and the expiry."""
        msg = f"{sha256}|{byte_range.strip().lower()}|{expires}".encode()
        return hmac.new(self.signing_key, msg, hashlib.sha256).hexdigest()[:40]

    def record(self, req: Req) -> None:
        with self._lock:
            self.requests.append(req)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # a client went away, or a connection we reset on purpose
            return
        super().handle_error(request, client_address)


def _handler_for(hub: TestHub, server_name: str) -> type[BaseHTTPRequestHandler]:
    return type(f"_{server_name.title()}Handler", (_Handler,), {"hub": hub, "server_name": server_name})


class _Refusal(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None, message: str = "") -> None:
        super().__init__(status, message)
        self.status = status
        self.headers = headers or {}
        self.message = message or self.headers.get("X-Error-Message", "")


class _Reset(Exception):
    """The connection was reset on purpose (fault `reset_after`)."""


def _not_found() -> _Refusal:
    return _Refusal(404, {}, "Not Found")


def _invalid_credentials() -> _Refusal:
    return _Refusal(401, {"X-Error-Message": _INVALID_CREDENTIALS})


def _repo_not_found() -> _Refusal:
    return _Refusal(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})


class _Handler(BaseHTTPRequestHandler):
    hub: TestHub
    server_name: str
    protocol_version = "HTTP/1.1"
    server_version = "TestHub/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        self.req = Req(self.server_name, method, self.path, {k.lower(): v for k, v in self.headers.items()})
        self.fault: Fault | None = None
        if not (self.server_name == "hub" and self.path.startswith("/_test/")):  # control calls are not traffic
            self.hub.record(self.req)
        try:
            length = int(self.headers.get("content-length") or 0)
            self.body_in = self.rfile.read(length) if length > 0 else b""
            parts = urlsplit(self.path)
            self.query = parse_qs(parts.query)
            # Path segments, each decoded on its own: a revision may arrive as refs%2Fpr%2F1.
            self.segments = [unquote(s) for s in parts.path.split("/")[1:]]
            if self.server_name == "hub" and parts.path.startswith("/_test/"):
                self._control(method, parts.path)
                return
            if self.hub.settings.delay_ms:
                time.sleep(self.hub.settings.delay_ms / 1000)
            target = self.path
            if self.server_name == "cdn":  # CDN paths carry the sha256: let faults name the file too
                spec = self._cdn_spec()
                target += f" {spec.path}" if spec else ""
            self.fault = self.hub.take_fault(self.server_name, method, target)
            if self.fault is not None and (self.fault.silent is not None or self.fault.trickle is not None):
                self._stall(self.fault)
                return
            if self.fault is not None and self.fault.status is not None:
                headers = {"Retry-After": str(self.fault.retry_after)} if self.fault.retry_after is not None else {}
                raise _Refusal(self.fault.status, headers, f"injected {self.fault.status}")
            if self.server_name == "cdn":
                self._cdn(method)
            else:
                self._hub(method)
        except _Refusal as r:
            body = {"error": r.message} if r.message else {"error": "error"}
            self._send_json(r.status, body, r.headers)
        except _Reset:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def _stall(self, fault: Fault) -> None:
        """A hub that hangs: no answer at all, or one whose body never ends; either way bounded, then a close."""
        self.close_connection = True
        if fault.silent is not None:
            self.hub.stopping.wait(fault.silent)
            return
        assert fault.trickle is not None
        self.req.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        self.wfile.flush()
        until = time.monotonic() + fault.trickle
        while time.monotonic() < until and not self.hub.stopping.wait(0.2):
            self.wfile.write(b" ")
            self.wfile.flush()

    # -- responses --------------------------------------------------------------------------

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self.req.status = status
        self.send_response(status)
        self.send_header("X-Request-Id", f"Root=1-{os.urandom(12).hex()}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, str], content_type: str) -> None:
        fault = self.fault
        if fault is not None and fault.flip_at is not None and 0 <= fault.flip_at < len(body):
            body = body[: fault.flip_at] + bytes([body[fault.flip_at] ^ 0xFF]) + body[fault.flip_at + 1 :]
        self._start(status, {"Content-Type": content_type, "Content-Length": str(len(body)), **headers})
        if self.command == "HEAD":
            return
        if fault is not None and fault.reset_after is not None:
            self.connection.sendall(body[: fault.reset_after])
            self._reset()
        if fault is not None and fault.close_after is not None:
            self.connection.sendall(body[: fault.close_after])
            self._close()
        self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), headers or {}, "application/json; charset=utf-8")

    def _reset(self) -> None:
        """Hard-close: SO_LINGER 0 makes close() send RST, so the client sees a connection error."""
        sock = self.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        raise _Reset()

    def _close(self) -> None:
        """A clean but early close (FIN): the client sees fewer body bytes than announced."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_WR)
        raise _Reset()

    # -- identity and access ----------------------------------------------------------------

    def _user(self) -> User | None:
        """The token's user; None without a token; 401 for a token the Hub does not know (as on every route)."""
        auth = self.headers.get("authorization")
        if auth is None:
            return None
        scheme, _, token = auth.strip().partition(" ")
        user = self.hub.world.users.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise _invalid_credentials()
        return user

    def _repo(self, repo_id: str) -> Repo:
        repo = self.hub.world.repos.get(repo_id)
        if repo is None:
            raise _repo_not_found()
        return repo

    def _commit(self, repo: Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise _Refusal(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {revision}"})
        return sha

    def _require_read(self, repo: Repo, user: User | None) -> None:
        """Gated: 401 GatedRepo without a token, 403 GatedRepo with the reason when the user may not read."""
        if not repo.gated:
            return
        if user is None:
            raise _Refusal(401, {
                "X-Error-Code": "GatedRepo",
                "X-Error-Message": f"Access to model {repo.repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in.",
            })
        with self.hub._lock:
            state = self.hub.world.access.get((user.name, repo.repo_id), "none")
        fine_refusal = user.role == "fineGrained" and not user.can_read_gated
        if state != "accepted" or fine_refusal:
            message = gated_message(state, repo.repo_id, fine_refusal and state == "accepted")
            raise _Refusal(403, {"X-Error-Code": "GatedRepo", "X-Error-Message": message})

    # -- the hub ----------------------------------------------------------------------------

    def _hub(self, method: str) -> None:
        seg = self.segments
        if seg[:2] == ["api", "whoami-v2"] and len(seg) == 2 and method in ("GET", "HEAD"):
            return self._whoami()
        if seg[:2] == ["api", "jobs"]:
            return self._jobs(method, seg[2:])
        if seg[:2] == ["api", "models"] and len(seg) >= 4:
            return self._api_models(method, f"{seg[2]}/{seg[3]}", seg[4:])
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise _not_found()

    def _control(self, method: str, path: str) -> None:
        if method != "POST" or self.client_address[0] != "127.0.0.1":
            raise _not_found()
        try:
            body = json.loads(self.body_in or b"{}")
        except ValueError as e:
            raise _Refusal(400, {}, f"bad JSON: {e}") from e
        if not isinstance(body, dict):
            raise _Refusal(400, {}, "expected a JSON object")
        settings = self.hub.settings
        if path == "/_test/settings":
            known = {f.name for f in dataclasses.fields(settings)}
            unknown = sorted(set(body) - known)
            if unknown:
                raise _Refusal(400, {}, f"unknown settings: {', '.join(unknown)}")
            for k, v in body.items():
                setattr(settings, k, v)
        elif path == "/_test/faults":
            try:
                self.hub.add_fault(**body)
            except (TypeError, ValueError) as e:
                raise _Refusal(400, {}, str(e)) from e
        elif path == "/_test/clear":
            self.hub.clear_faults()
            settings.reset()
            self.hub.clear_requests()
        else:
            raise _not_found()
        self._send_json(200, {"ok": True, "settings": dataclasses.asdict(settings)})

    def _whoami(self) -> None:
        if not self.hub.settings.whoami:
            raise _not_found()
        user = self._user()
        if user is None:
            raise _invalid_credentials()
        token: dict[str, Any] = {
            "displayName": f"{user.name}-{user.role}",
            "role": user.role,
            "createdAt": "2025-06-01T00:00:00.000Z",
        }
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
            "isPro": False,
            "canPay": False,
            "emailVerified": True,
            "orgs": [{"type": "org", "name": o, "fullname": o.title(), "roleInOrg": "read"} for o in user.orgs],
            "auth": {"type": "access_token", "accessToken": token},
        })

    def _api_models(self, method: str, repo_id: str, tail: list[str]) -> None:
        # [] | revision/{rev} | tree/{rev}[/path] | auth-check[/write] | paths-info/{rev}
        if tail[:1] == ["auth-check"] and method in ("GET", "HEAD"):
            return self._auth_check(repo_id, write=tail[1:] == ["write"])
        self._user()  # 401 for a token the Hub does not know, as everywhere
        repo = self._repo(repo_id)
        if method in ("GET", "HEAD") and (not tail or (tail[0] == "revision" and len(tail) >= 2)):
            return self._info(repo, self._commit(repo, "/".join(tail[1:]) or "main"))
        if tail[:1] == ["tree"] and len(tail) >= 2 and method in ("GET", "HEAD"):
            return self._tree(repo, self._commit(repo, tail[1]), "/".join(tail[2:]).strip("/"))
        if tail[:1] == ["paths-info"] and len(tail) >= 2 and method == "POST":
            return self._paths_info(repo, self._commit(repo, "/".join(tail[1:])))
        raise _not_found()

    def _auth_check(self, repo_id: str, write: bool) -> None:
        mode = self.hub.settings.auth_check
        if mode == "missing":
            raise _not_found()
        if mode == "repo_not_found":
            raise _repo_not_found()
        user = self._user()
        repo = self._repo(repo_id)
        if write:
            namespace = repo_id.split("/")[0]
            if user is None or user.role == "read" or namespace not in (user.name, *user.orgs):
                raise _Refusal(403, {"X-Error-Message": f"You don't have write access to model {repo_id}."})
        self._require_read(repo, user)
        self._send_json(200, {"ok": True})

    def _info(self, repo: Repo, sha: str) -> None:
        blobs = self.query.get("blobs", ["false"])[-1].lower() in ("true", "1")
        siblings = []
        for f in sorted(repo.commits[sha].values(), key=lambda f: f.path):
            s: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                size = f.size + self.hub.settings.listed_size_delta.get(f.path, 0)  # a listing that lies
                s.update(size=size, blobId=f.tree_oid)
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": size, "pointerSize": len(f.pointer)}
            siblings.append(s)
        doc: dict[str, Any] = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "createdAt": "2025-06-01T00:00:00.000Z",
            "private": False,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": ["license:cc-by-nc-sa-4.0"],
            "library_name": None,
            "siblings": siblings,
            "spaces": [],
        }
        if blobs:
            doc["usedStorage"] = sum(f.size for f in repo.commits[sha].values())
        if "securityStatus" in self.query:
            doc["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        self._send_json(200, doc)

    def _entries(self, repo: Repo, sha: str, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        """Tree entries under `prefix` (a folder; "" for the root), folders first-seen, sorted by path."""
        files = repo.commits[sha]
        base = f"{prefix}/" if prefix else ""
        out: dict[str, dict[str, Any]] = {}
        for p, f in files.items():
            if not p.startswith(base):
                continue
            rest = p[len(base):]
            if "/" in rest:
                parts = rest.split("/")
                for depth in range(1, len(parts) if recursive else 2):
                    folder = base + "/".join(parts[:depth])
                    oid = hashlib.sha1(f"tree {sha} {folder}".encode()).hexdigest()
                    out.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
                if not recursive:
                    continue
            out[p] = _file_entry(f)
        return [out[k] for k in sorted(out)]

    def _tree(self, repo: Repo, sha: str, prefix: str) -> None:
        if prefix and prefix in repo.commits[sha]:
            raise _Refusal(400, {"X-Error-Message": f"{prefix} is a file, not a directory"})
        recursive = self.query.get("recursive", ["false"])[-1].lower() in ("true", "1")
        entries = self._entries(repo, sha, prefix, recursive)
        if prefix and not entries:
            raise _Refusal(404, {"X-Error-Code": "EntryNotFound",
                                 "X-Error-Message": f"{prefix} does not exist on \"{sha}\""})
        page = self.hub.settings.tree_page_size
        headers: dict[str, str] = {}
        if page:
            start = int(self.query.get("cursor", ["0"])[-1] or 0)
            if start + page < len(entries):
                query = {k: v[-1] for k, v in self.query.items() if k != "cursor"}
                query["cursor"] = str(start + page)
                host = self.headers.get("host") or urlsplit(self.hub.url).netloc
                path = urlsplit(self.path).path
                headers["Link"] = f'<http://{host}{path}?{urlencode(query)}>; rel="next"'
            entries = entries[start : start + page]
        self._send_json(200, entries, headers)

    def _paths_info(self, repo: Repo, sha: str) -> None:
        ctype = (self.headers.get("content-type") or "").lower()
        if ctype.startswith("application/json"):
            paths = list(json.loads(self.body_in or b"{}").get("paths") or [])
        else:
            paths = parse_qs(self.body_in.decode(), keep_blank_values=True).get("paths", [])
        files = repo.commits[sha]
        out: list[dict[str, Any]] = []
        for p in dict.fromkeys(x.strip("/") for x in paths):
            if p in files:
                out.append(_file_entry(files[p]))
            elif p and any(q.startswith(p + "/") for q in files):
                oid = hashlib.sha1(f"tree {sha} {p}".encode()).hexdigest()
                out.append({"type": "directory", "oid": oid, "size": 0, "path": p})
        self._send_json(200, out)

    # -- /resolve and the CDN ---------------------------------------------------------------

    def _resolve(self, method: str, repo_id: str, revision: str, file_path: str) -> None:
        user = self._user()
        repo = self._repo(repo_id)
        sha = self._commit(repo, revision)
        self._require_read(repo, user)
        if repo.gated and self.hub.settings.mirror_gated_refusal:
            raise _Refusal(403, {"X-Error-Code": "GatedRepo", "X-Error-Message": gated_message("none", repo_id)})
        spec = repo.commits[sha].get(file_path)
        if spec is None:
            raise _Refusal(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha,
                                 "X-Error-Message": "Entry not found"})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{spec.blob_sha1}"', "Accept-Ranges": "bytes"}
        if spec.lfs:
            headers.update({"ETag": f'"{spec.sha256}"', "X-Linked-Etag": f'"{spec.sha256}"',
                            "X-Linked-Size": str(spec.size)})
            if self.hub.settings.redirect_lfs:
                # A signed, expiring URL on another origin, as the real Hub gives (cdn-lfs / cas-bridge).
                disposition = f"inline; filename*=UTF-8''{quote(Path(spec.path).name)}; " \
                              f'filename="{Path(spec.path).name}";'
                # Like the Hub's CDN: the URL is good for the Range this request asked (any range when it
                # asked none) and for a limited time; the CDN answers 403 otherwise.
                expires = int(time.time() + self.hub.settings.cdn_url_ttl)
                query = urlencode({
                    "response-content-disposition": disposition,
                    "Expires": str(expires),
                    "Signature": self.hub.sign(spec.sha256, self.headers.get("range", ""), expires),
                    "Key-Pair-Id": "KTESTHUBCDN",
                })
                location = f"{self.hub.cdn_url}/repos/{_repo_dir(repo_id)}/{spec.sha256}?{query}"
                self._send_bytes(302, b"", {"Location": location, **headers}, "text/plain; charset=utf-8")
                return
        self._serve_file(method, spec, headers)

    def _cdn_spec(self) -> FileSpec | None:
        sha256 = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        for repo in self.hub.world.repos.values():
            for files in repo.commits.values():
                for spec in files.values():
                    if spec.lfs and spec.sha256 == sha256:
                        return spec
        return None

    def _cdn(self, method: str) -> None:
        spec = self._cdn_spec()
        if spec is None or method not in ("GET", "HEAD") or self.segments[:1] != ["repos"]:
            raise _Refusal(404, {}, "NoSuchKey")
        try:
            expires = int(self.query.get("Expires", ["0"])[-1])
        except ValueError:
            expires = 0
        signature = self.query.get("Signature", [""])[-1]
        if expires < time.time():
            raise _Refusal(403, {}, "Request has expired")
        if not any(hmac.compare_digest(signature, self.hub.sign(spec.sha256, r, expires))
                   for r in ("", self.headers.get("range", ""))):
            raise _Refusal(403, {}, "Auth failed: invalid range")
        headers = {"ETag": f'"{spec.sha256}"', "Accept-Ranges": "bytes",
                   "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"}
        disposition = self.query.get("response-content-disposition")
        if disposition:
            headers["Content-Disposition"] = disposition[-1]
        self._serve_file(method, spec, headers)

    def _serve_file(self, method: str, spec: FileSpec, headers: dict[str, str]) -> None:
        settings = self.hub.settings
        start, end, status = 0, spec.size - 1, 200
        rng = self.headers.get("range")
        if rng and not settings.ignore_range:
            parsed = _parse_range(rng, spec.size)
            if parsed is not None:
                start, end = parsed
                if self.fault is not None and self.fault.short is not None:
                    end = min(end, start + self.fault.short - 1)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{spec.size}"
        length = end - start + 1
        headers.setdefault("Content-Type", "application/octet-stream")
        if settings.no_content_length and method == "GET":
            headers["Connection"] = "close"
            self.close_connection = True
        else:
            headers["Content-Length"] = str(length)
        self._start(status, headers)
        if method == "HEAD":
            return
        self._send_body(spec, start, length)

    def _send_body(self, spec: FileSpec, start: int, length: int) -> None:
        fault = self.fault
        throttle = self.hub.settings.throttle_bps
        reset_after = fault.reset_after if fault else None
        close_after = fault.close_after if fault else None
        cut = min((n for n in (reset_after, close_after) if n is not None), default=None)
        flip_at = fault.flip_at if fault else None
        sock = self.connection
        sent = 0
        limit = length if cut is None else min(length, cut)
        # Zero-copy (the kernel moves the bytes), so that the server's own CPU is not what limits a
        # benchmark; throttled: slices of 1/200 s of the rate, each sent on time. A flipped byte goes alone.
        step = max(64 * 1024, throttle // 200) if throttle else limit
        t0 = time.monotonic()
        with spec.data_path.open("rb") as f:
            while sent < limit:
                pos = start + sent
                want = min(step, limit - sent)
                if pos == flip_at:
                    f.seek(pos)
                    sock.sendall(bytes([f.read(1)[0] ^ 0xFF]))
                    n = 1
                else:
                    if flip_at is not None and pos < flip_at < pos + want:
                        want = flip_at - pos
                    n = sock.sendfile(f, offset=pos, count=want)
                    if n == 0:
                        break
                sent += n
                self.req.bytes_sent = sent
                ahead = sent / throttle - (time.monotonic() - t0) if throttle else 0
                if ahead > 0:
                    time.sleep(ahead)
        if cut is not None and cut <= sent:
            if cut == reset_after:
                self._reset()
            self._close()

    # -- jobs -------------------------------------------------------------------------------

    def _jobs(self, method: str, rest: list[str]) -> None:
        # POST {ns} (run) | GET {ns} (list) | GET {ns}/{id} | GET {ns}/{id}/logs | POST {ns}/{id}/cancel
        user = self._user()
        if user is None:
            raise _invalid_credentials()
        if not rest or not rest[0]:
            raise _not_found()
        namespace = rest[0]
        if namespace not in (user.name, *user.orgs):
            raise _Refusal(403, {"X-Error-Message": f"You cannot use jobs in the namespace {namespace}"})
        docs = self.hub._job_docs
        if len(rest) == 1 and method == "POST":
            try:
                body = json.loads(self.body_in or b"{}")
            except ValueError as e:
                raise _Refusal(400, {}, f"bad JSON: {e}") from e
            if not isinstance(body, dict) or not (body.get("dockerImage") or body.get("spaceId")):
                raise _Refusal(400, {}, "dockerImage or spaceId is required")
            job_id = os.urandom(12).hex()
            with self.hub._lock:
                self.hub.jobs.append(
                    {"namespace": namespace, "body": body, "authorization": self.headers.get("authorization", "")}
                )
                docs[job_id] = _job_doc(job_id, namespace, user, body)
            return self._send_json(200, docs[job_id])
        if len(rest) == 1 and method == "GET":
            return self._send_json(200, [_finished(d) for d in docs.values() if d["owner"]["name"] == namespace])
        doc = docs.get(rest[1])
        if doc is None or doc["owner"]["name"] != namespace:
            raise _Refusal(404, {"X-Error-Message": "Job not found"})
        if len(rest) == 2 and method == "GET":
            return self._send_json(200, _finished(doc))
        if rest[2:] == ["cancel"] and method == "POST":
            doc["status"] = {"stage": "CANCELED", "message": None}
            return self._send_json(200, doc)
        if rest[2:] == ["logs"] and method == "GET":
            now = datetime.now(timezone.utc) - timedelta(seconds=2)
            lines = [f"===== Job started at {now.isoformat()} =====", "hello from the test hub"]
            body = b"".join(
                b"data: " + json.dumps({"data": line, "timestamp": now.isoformat().replace("+00:00", "Z")}).encode()
                + b"\n\n"
                for line in lines
            )
            return self._send_bytes(200, body, {"Cache-Control": "no-cache"}, "text/event-stream")
        raise _not_found()


def _repo_dir(repo_id: str) -> str:
    h = hashlib.sha256(repo_id.encode()).hexdigest()
    return f"{h[:2]}/{h[2:4]}/{h[4:20]}"


def _file_entry(f: FileSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": f.tree_oid, "size": f.size, "path": f.path}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
    return entry


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive, or None to ignore the header (not bytes=, several ranges, junk); 416 if unsatisfiable."""
    unsatisfiable = _Refusal(416, {"Content-Range": f"bytes */{size}"}, "Requested Range Not Satisfiable")
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    a, sep, b = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                raise unsatisfiable
            start, end = max(0, size - n), size - 1
        else:
            start = int(a)
            end = min(int(b), size - 1) if b else size - 1
    except ValueError:
        return None
    if start < 0 or (b and a and int(b) < start):
        return None
    if start >= size:
        raise unsatisfiable
    return start, end


def _job_doc(job_id: str, namespace: str, user: User, body: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {
        "id": job_id,
        "createdAt": now,
        "dockerImage": body.get("dockerImage"),
        "spaceId": body.get("spaceId"),
        "command": body.get("command", []),
        "arguments": body.get("arguments", []),
        "environment": body.get("environment", {}),
        # values are never echoed: the Hub keeps secrets encrypted
        "secrets": {k: "[encrypted]" for k in (body.get("secrets") or {})},
        "flavor": body.get("flavor", "cpu-basic"),
        "labels": body.get("labels"),
        "status": {"stage": "RUNNING", "message": None},
        "owner": {"id": hashlib.md5(namespace.encode()).hexdigest()[:24], "name": namespace,
                  "type": "user" if namespace == user.name else "org"},
        "initiator": {"type": "user", "id": hashlib.md5(user.name.encode()).hexdigest()[:24], "name": user.name},
    }


def _finished(doc: dict[str, Any]) -> dict[str, Any]:
    """A job looked at after its submission: done (logs are short)."""
    if doc["status"]["stage"] == "RUNNING":
        return dict(doc, status={"stage": "COMPLETED", "message": None})
    return doc


# -- CLI ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the local test Hub.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--big-size", type=int, default=3 * 1024 * 1024, help="size of model.pth in bytes")
    ap.add_argument("--data-dir", help="where the files are written (default: a temporary folder, removed on exit)")
    ap.add_argument("--throttle-mbps", type=float, default=0, help="cap each connection at this many MB/s (0: none)")
    ap.add_argument("--delay-ms", type=int, default=0, help="delay every answer by this many milliseconds")
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="testhub-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hub = None
    try:
        hub = TestHub(default_world(data_dir, args.big_size), port=args.port, cdn_port=args.cdn_port)
        hub.settings.throttle_bps = int(args.throttle_mbps * 1e6) or None
        hub.settings.delay_ms = args.delay_ms
        hub.start()
        print(json.dumps({"url": hub.url, "cdn_url": hub.cdn_url, "tokens": TOKENS, "model": MODEL}), flush=True)
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if hub is not None:
            hub.stop()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
