"""The request handler's core: dispatch (control calls, delay, faults), responses, refusals, and who the
caller is and what they may read. `cdn.py` and `routes.py` add the routes on top of it."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from .faults import Fault, Req, Settings
from .world import FileSpec, Repo, User, World, gated_message


class HubState(Protocol):
    """What a handler uses of the hub that serves it (server.LocalHub), named here so that this module, the
    routes and the CDN need nothing from the server module (no import cycle)."""

    url: str
    cdn_url: str
    world: World
    settings: Settings
    lock: threading.Lock
    stopping: threading.Event
    extra_routes: dict[str, Callable[[Any, str, list[str]], None]]
    requests: list[Req]

    def record(self, req: Req) -> None: ...
    def take_fault(self, server: str, method: str, target: str) -> Fault | None: ...
    def sign(self, sha256: str, byte_range: str, expires: int) -> str: ...
    def add_fault(self, match: str, **kw: Any) -> Any: ...
    def clear_faults(self) -> None: ...
    def clear_requests(self) -> None: ...

_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class Refusal(Exception):
    """An error answer: status, headers (X-Error-Code, X-Error-Message...) and a JSON body {"error": message}."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, message: str = "") -> None:
        super().__init__(status, message)
        self.status = status
        self.headers = headers or {}
        self.message = message or self.headers.get("X-Error-Message", "")


class _Reset(Exception):
    """The connection was reset on purpose (fault `reset_after`)."""


def not_found() -> Refusal:
    return Refusal(404, {}, "Not Found")


def invalid_credentials() -> Refusal:
    return Refusal(401, {"X-Error-Message": _INVALID_CREDENTIALS})


def repo_not_found() -> Refusal:
    return Refusal(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})


class Handler(BaseHTTPRequestHandler):
    hub: HubState
    server_name: str
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two sends: with Nagle's algorithm on, the body of a small answer on a
    # kept-alive connection waited for the client's delayed ACK of the headers (measured: 63 ms for an answer
    # delayed 20 ms, against 21 ms on a fresh connection). The Hub's servers show no such stall.
    disable_nagle_algorithm = True
    server_version = "LocalHub/1.0"
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
        self.req = Req(self.server_name, method, self.path, {k.lower(): v for k, v in self.headers.items()},
                       at=time.monotonic())
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
            delay = self.hub.settings.delay_ms
            if self.server_name == "cdn" and self.hub.settings.cdn_delay_ms is not None:
                delay = self.hub.settings.cdn_delay_ms
            if delay:
                time.sleep(delay / 1000)
            self._limit_connections()
            target = self.path
            if self.server_name == "cdn":  # CDN paths carry the sha256: let faults name the file too
                spec = self._cdn_spec()
                target += f" {spec.path}" if spec else ""
            self.fault = self.hub.take_fault(self.server_name, method, target)
            self.req.fault = self.fault
            if self.fault is not None and (self.fault.silent is not None or self.fault.trickle is not None):
                self._stall(self.fault)
                return
            if self.fault is not None and self.fault.status is not None and self.fault.foreign:
                self._foreign(self.fault.status)
                return
            if self.fault is not None and self.fault.status is not None:
                headers = {"Retry-After": str(self.fault.retry_after)} if self.fault.retry_after is not None else {}
                if self.fault.error_code is not None:
                    headers["X-Error-Code"] = self.fault.error_code
                raise Refusal(self.fault.status, headers, f"injected {self.fault.status}")
            if self.fault is not None and self.fault.hop:
                here = parts.path.rsplit("/", 1)[-1] + (f"?{parts.query}" if parts.query else "")
                self.send_bytes(302, b"", {"Location": here}, "text/plain; charset=utf-8")
                return
            self.route(method)
        except Refusal as r:
            body = {"error": r.message} if r.message else {"error": "error"}
            self.send_json(r.status, body, r.headers)
        except _Reset:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def _limit_connections(self) -> None:
        """A CDN's per-client limit (settings.max_connections): 429 and a close on a connection beyond it."""
        limit = self.hub.settings.max_connections
        older = getattr(self.server, "older_connections", None)
        if limit is None or self.server_name != "cdn" or older is None or older(self.connection) < limit:
            return
        self.close_connection = True
        raise Refusal(429, {"Retry-After": str(self.hub.settings.limit_retry_after), "Connection": "close"},
                      "Too many connections")

    def _foreign(self, status: int) -> None:

        """An answer from something in front of the hub: no X-Request-Id or X-Error-*, an HTML body."""
        body = f"<html><body><h1>{status}</h1>Request refused by the network's gateway.</body></html>".encode()
        self.req.status = status
        self.send_response(status)
        if status == 407:
            self.send_header("Proxy-Authenticate", 'Basic realm="gateway"')
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

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

    # -- what the routes provide ----------------------------------------------------------------

    def route(self, method: str) -> None:
        """Answer the request (routes.py)."""
        raise NotImplementedError

    def _control(self, method: str, path: str) -> None:
        """Answer a POST /_test/... control call (routes.py)."""
        raise NotImplementedError

    def _cdn_spec(self) -> FileSpec | None:
        """The file a CDN path names (cdn.py)."""
        raise NotImplementedError

    # -- responses --------------------------------------------------------------------------

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self.req.status = status
        self.send_response(status)
        self.send_header("X-Request-Id", f"Root=1-{os.urandom(12).hex()}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def send_bytes(self, status: int, body: bytes, headers: dict[str, str], content_type: str) -> None:
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

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), headers or {}, "application/json; charset=utf-8")

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

    def user(self) -> User | None:
        """The token's user; None without a token; 401 for a token the Hub does not know (as on every route)."""
        auth = self.headers.get("authorization")
        if auth is None:
            return None
        scheme, _, token = auth.strip().partition(" ")
        user = self.hub.world.users.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise invalid_credentials()
        return user

    def _repo(self, repo_id: str) -> Repo:
        repo = self.hub.world.repos.get(repo_id)
        if repo is None:
            raise repo_not_found()
        return repo

    def _commit(self, repo: Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise Refusal(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {revision}"})
        return sha

    def _require_read(self, repo: Repo, user: User | None) -> None:
        """Gated: 401 GatedRepo without a token, 403 GatedRepo with the reason when the user may not read."""
        if not repo.gated:
            return
        if user is None:
            raise Refusal(401, {
                "X-Error-Code": "GatedRepo",
                "X-Error-Message": f"Access to model {repo.repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in.",
            })
        with self.hub.lock:
            state = self.hub.world.access.get((user.name, repo.repo_id), "none")
        fine_refusal = user.role == "fineGrained" and not user.can_read_gated
        if state != "accepted" or fine_refusal:
            message = gated_message(state, repo.repo_id, fine_refusal and state == "accepted")
            raise Refusal(403, {"X-Error-Code": "GatedRepo", "X-Error-Message": message})

