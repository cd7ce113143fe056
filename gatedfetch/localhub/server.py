"""The two servers of the local hub (the hub: API and /resolve; the CDN: LFS bytes, another origin so the
client drops Authorization), their lifecycle, and the state tests and the control calls change."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import socket
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from .faults import Fault, Faults, Req, Settings
from .routes import Routes
from .world import Repo, World, default_world

# A route a hub adds: called with the request's handler, its method and the path segments after its prefix.
POLL = 0.01  # how often a server's loop looks for a stop request: a stop waits about this long
ExtraRoute = Callable[[Routes, str, list[str]], None]
_Hub = TypeVar("_Hub", bound="LocalHub")


class LocalHub:
    """Two servers: the hub (API + /resolve) and the CDN (LFS bytes). Start, use `.url`, stop."""

    __test__ = False  # not a pytest class (test modules import it as TestHub)

    def __init__(self, world: World | None = None, *, port: int = 0, cdn_port: int = 0) -> None:
        if world is None:
            data_dir = tempfile.mkdtemp(prefix="localhub-")
            weakref.finalize(self, shutil.rmtree, data_dir, True)
            world = default_world(data_dir)
        self.world = world
        self.settings = Settings()
        self.requests: list[Req] = []
        self.extra_routes: dict[str, ExtraRoute] = {}  # path prefix ("api/jobs") -> route, checked first
        self.faults = Faults()
        self.lock = threading.Lock()
        self._ports = (port, cdn_port)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.url = ""
        self.cdn_url = ""
        self.signing_key = os.urandom(16)
        self.stopping = threading.Event()  # set by stop(): ends the waits of silent and trickling answers

    # -- lifecycle --------------------------------------------------------------------------

    def start(self: _Hub) -> _Hub:
        if self._servers:
            return self
        for name, port in zip(("hub", "cdn"), self._ports, strict=True):
            server = _Server(("127.0.0.1", port), _handler_for(self, name))
            self._servers.append(server)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": POLL}, name=f"localhub-{name}", daemon=True
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
        # Both servers at once: each shutdown() waits for its loop's next poll.
        stoppers = [threading.Thread(target=s.shutdown, daemon=True) for s in servers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for s in servers:
            s.server_close()
            s.close_connections()
        for t in self._threads:
            t.join(timeout=2)
        self._threads = []

    def __enter__(self: _Hub) -> _Hub:
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
        with self.lock:
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
        error_code: str | None = None,
        foreign: bool = False,
        slow_after: int | None = None,
        freeze_after: int | None = None,
        after: int = 0,
    ) -> None:
        """Make matching requests fail. `match` is a substring of the request path (with its query; on the CDN
        the file's name is matched too). `status`: answer it instead (with `Retry-After` if `retry_after`).
        `reset_after=N`: headers and N body bytes, then a reset (RST). `close_after=N`: the same with a clean
        close (FIN). `flip_at=K`: body byte K xor 0xFF. `short=N`: a 206 for only the first N bytes of the range
        asked, with matching headers (as CDN edges do). `silent=S`: accept, read, say nothing for S seconds (a hub
        that hangs). `trickle=S`: a 200 with a large Content-Length whose body comes a byte every 0.2 s for S
        seconds (no read timeout ever fires). `error_code`: the X-Error-Code of the `status` answer. `foreign`: the
        `status` answer comes as a proxy or firewall sends it: an HTML body, none of the Hub's headers.
        `slow_after=N`: a file body whose bytes after the first N come one every 0.2 s (a sick CDN edge: no read
        timeout fires). `freeze_after=N`: a file body that stops after N bytes, its socket held open until the hub
        stops (a network gone black). `after=K`: the first K matching requests pass untouched.
        `times=None`: forever; each matching request uses one. Each request's record names the fault it met."""
        self.faults.add(Fault(
            match, status=status, times=times, retry_after=retry_after, reset_after=reset_after, flip_at=flip_at,
            server=server, method=method.upper() if method else None, close_after=close_after, short=short,
            silent=silent, trickle=trickle, error_code=error_code, foreign=foreign,
            slow_after=slow_after, freeze_after=freeze_after, after=after,
        ))

    def clear_faults(self) -> None:
        self.faults.clear()

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    def bytes_sent(self, match: str = "") -> int:
        """File body bytes sent by both servers for requests whose path contains `match`."""
        with self.lock:
            return sum(r.bytes_sent for r in self.requests if match in r.path)

    def take_fault(self, server: str, method: str, target: str) -> Fault | None:
        """The first fault matching this request, one use consumed."""
        return self.faults.take(server, method, target)

    def sign(self, sha256: str, byte_range: str, expires: int) -> str:
        """The CDN URL's signature: bound to the file, the Range asked at /resolve ("" = any) and the expiry."""
        msg = f"{sha256}|{byte_range.strip().lower()}|{expires}".encode()
        return hmac.new(self.signing_key, msg, hashlib.sha256).hexdigest()[:40]

    def record(self, req: Req) -> None:
        with self.lock:
            self.requests.append(req)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._conns: dict[socket.socket, str] = {}  # open connections, oldest first, and their client's host
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns[request] = str(client_address[0])
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def older_connections(self, sock: socket.socket) -> int:
        """How many connections from the same host as `sock`, opened before it, are still open."""
        with self._conns_lock:
            host = self._conns.get(sock)
            n = 0
            for other, h in self._conns.items():
                if other is sock:
                    return n
                n += h == host
        return n

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



def _handler_for(hub: LocalHub, server_name: str) -> type[BaseHTTPRequestHandler]:
    return type(f"_{server_name.title()}Handler", (Routes,), {"hub": hub, "server_name": server_name})
