"""What can be switched on a running local hub: faults (one bad answer per matching request), settings
(how every answer behaves) and the record of each request. Standard library only."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass


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
    error_code: str | None = None  # with `status`: the X-Error-Code of that answer (as the Hub sends)
    foreign: bool = False  # with `status`: the answer of something in front of the hub (a proxy, a firewall)
    hop: bool = False  # a 302 back to the same URL, Location relative (same origin): `times=n` makes a chain of n
    shift_range: int | None = None  # a 206 whose Content-Range starts this many bytes after the start asked
    slow_after: int | None = None  # a file body whose bytes after this many come one every 0.2 s (a sick edge)
    freeze_after: int | None = None  # a file body that stops after this many bytes, its socket held open (a VPN drop)
    after: int = 0  # let this many matching requests pass first

    def matches(self, server: str, method: str, target: str) -> bool:
        return self.match in target and self.server in ("any", server) and self.method in (None, method)


@dataclass
class Settings:
    ignore_range: bool = False
    no_content_length: bool = False
    throttle_bps: int | None = None  # each file answer (so each connection) sends at most this many bytes/s
    delay_ms: int = 0  # every answer waits this long first: a link's round trip and a server's think time
    cdn_delay_ms: int | None = None  # the CDN's answers wait this long instead (a near edge, a far hub's API)
    # A CDN's per-client limit: on the CDN, a request on a connection opened after this many others from the same
    # host, still open, gets 429 with Retry-After: limit_retry_after, and its connection is closed.
    max_connections: int | None = None
    limit_retry_after: int = 1
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
    fault: Fault | None = None  # the fault this request met
    at: float = 0.0  # when it came (time.monotonic())


class Faults:
    """The faults armed on a server pair, in the order added; each matching request uses one (thread-safe)."""

    def __init__(self) -> None:
        self._items: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        if fault.server not in ("hub", "cdn", "any"):
            raise ValueError(f"server must be hub, cdn or any, not {fault.server!r}")
        with self._lock:
            self._items.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def take(self, server: str, method: str, target: str) -> Fault | None:
        """The first fault matching this request, one use consumed (`times=None`: never used up)."""
        with self._lock:
            for f in self._items:
                if f.matches(server, method, target):
                    if f.after > 0:
                        f.after -= 1
                        return None
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._items.remove(f)
                    return f
        return None
