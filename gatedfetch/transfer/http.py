"""The one transport: GET a URL over stdlib `http.client`, keep connections alive, follow redirects.

Why not huggingface_hub's httpx session: reading a body through it (`iter_raw`, a new `bytes` per
chunk) was measured at 2-3x the CPU of `http.client.readinto` into a reused buffer (1 GB on a 2-core
machine: 3.6-5.5 s against 1.7-2.2 s), and with many streams at once the CPU is what runs out. So the
metadata calls go through huggingface_hub and the bytes through here.

* `Client` holds one thread's connections, one per origin, reused while each answer is read to its
  end (a ranged download makes two requests per range: /resolve, then the CDN).
* `Authorization` goes only to the origin the caller names (the Hub's), never to the CDN a redirect
  leads to; no header value ever reaches a message, a log or an exception.
* Proxies from the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl and
  huggingface_hub read them): an https URL through a `CONNECT` tunnel, an http URL in absolute form.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from urllib.parse import unquote, urljoin, urlsplit

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


class Headers(Mapping[str, str]):
    """Response headers with case-insensitive lookup (what the caller's X-Error-Code check needs)."""

    def __init__(self, items: Iterator[tuple[str, str]] | Sequence[tuple[str, str]]) -> None:
        self._d: dict[str, str] = {}
        for k, v in items:
            key = k.lower()
            self._d[key] = v if key not in self._d else f"{self._d[key]}, {v}"

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d


class Retry(Exception):
    """Something another attempt may fix: a reset, a timeout, a 5xx, a 429, a cut body."""

    def __init__(
        self,
        cause: str,
        retry_after: float | None = None,
        *,
        fresh_url: bool = False,
        status: int = 0,
        slow: bool = False,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after
        self.fresh_url = fresh_url  # a CDN refused its signed URL: ask /resolve again, no backoff
        self.status = status  # the HTTP status behind it, 0 for a network fault
        self.slow = slow  # cut for staying under its rate floor (watch.Pace): asked again at once, not a load signal


class Fatal(Exception):
    """A network problem no retry will fix (bad TLS certificate, a redirect loop, an unusable proxy)."""


class HttpRefused(Exception):
    """A non-retryable 4xx from the Hub, for the caller to classify (access refused, not found...).

    `headers` are the response's (case-insensitive lookup), never the request's."""

    def __init__(self, status: int, headers: Mapping[str, str], url: str) -> None:
        self.status = status
        self.headers = headers
        self.url = url
        super().__init__(f"HTTP {status} for {safe_url(url)}")


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (a CDN's signed query is a short-lived credential)."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc.rpartition('@')[2]}{p.path}"


def origin(url: str) -> tuple[str, str, int]:
    p = urlsplit(url)
    scheme = p.scheme.lower()
    return scheme, (p.hostname or "").lower(), p.port or (443 if scheme == "https" else 80)


def where(url: str) -> str:
    _, host, port = origin(url)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe(exc: BaseException) -> str:
    """A short cause for a network error; exception texts here never hold request headers."""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


_ssl_lock = threading.Lock()
_ssl_ctx: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """The same trust as huggingface_hub's session (httpcore2's default: SSL_CERT_FILE/DIR, then
    the system store), so a host the metadata calls reached is verified the same way here."""
    global _ssl_ctx
    with _ssl_lock:
        if _ssl_ctx is None:
            try:
                import httpcore2

                _ssl_ctx = httpcore2.default_ssl_context()
            except (ImportError, AttributeError):
                _ssl_ctx = ssl.create_default_context()
        return _ssl_ctx


def proxy_for(url: str) -> str | None:
    """The proxy URL the environment names for `url`, or None (also when NO_PROXY exempts the host)."""
    p = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(p.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = p.hostname or ""
    if urllib.request.proxy_bypass(f"{host}:{p.port}" if p.port else host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class Response:
    """One answer: status, headers, and a body to `readinto` a caller's buffer."""

    def __init__(self, client: Client, key: tuple[str, str, int, str], resp: http.client.HTTPResponse, url: str):
        self._client = client
        self._key = key
        self._resp = resp
        self.url = url
        self.status = resp.status
        self.reason = resp.reason
        self.headers = Headers(resp.getheaders())
        self.waited = 0.0  # seconds from the request sent to these headers (Client.get)

    def readinto(self, buf: memoryview) -> int:
        """Fill `buf` (blocks until it is full or the body ends); 0 at the end of the body."""
        return self._resp.readinto(buf)

    def abort(self) -> None:
        """Make a read of this answer blocked in another thread return now."""
        self._client.abort(self._key)

    def release(self) -> None:
        """Done with this answer: its connection stays for the next request only if the body was read to its end."""
        if self._resp.isclosed() or self._resp.length == 0:
            self._resp.close()
            self._client.keep(self._key)
        else:
            self._client.drop(self._key)


class Client:
    """One thread's HTTP/1.1 connections, one per origin, kept alive between requests."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._conns: dict[tuple[str, str, int, str], http.client.HTTPConnection] = {}
        self._idle: set[tuple[str, str, int, str]] = set()
        self._proxy_headers: dict[tuple[str, str, int, str], dict[str, str]] = {}
        self._socks: dict[tuple[str, str, int, str], socket.socket] = {}  # kept apart: http.client forgets the
        self._lock = threading.Lock()  # socket of a close-delimited answer, which abort() must still reach

    def _connection(self, url: str) -> tuple[tuple[str, str, int, str], http.client.HTTPConnection, str, bool]:
        scheme, host, port = origin(url)
        proxy = proxy_for(url)
        key = (scheme, host, port, proxy or "")
        with self._lock:
            conn = self._conns.get(key)
            if conn is not None and key in self._idle:
                self._idle.discard(key)
                return key, conn, self._target(url, proxy), True
            if conn is not None:
                conn.close()
        if scheme not in ("http", "https"):
            raise Fatal(f"refusing to follow a redirect to a {scheme or 'relative'} URL")
        extra: dict[str, str] = {}
        if proxy is None:
            conn = self._new(scheme, host, port)
        else:
            pp = urlsplit(proxy)
            if pp.scheme.lower() != "http":
                raise Fatal(f"the proxy {safe_url(proxy)} is not an http:// proxy; only http:// proxies are supported")
            if pp.username is not None:
                creds = f"{unquote(pp.username)}:{unquote(pp.password or '')}".encode()
                extra["Proxy-Authorization"] = "Basic " + base64.b64encode(creds).decode()
            conn = self._new(scheme, pp.hostname or "", pp.port or 80, plain=scheme == "http")
            if scheme == "https":
                conn.set_tunnel(host, port, headers=extra)
        with self._lock:
            self._conns[key] = conn
            # Proxy-Authorization goes in each request through a forward proxy; a tunnel sent it at CONNECT.
            self._proxy_headers[key] = extra if scheme == "http" else {}
        return key, conn, self._target(url, proxy), False

    def _new(self, scheme: str, host: str, port: int, plain: bool = False) -> http.client.HTTPConnection:
        if scheme == "https" and not plain:
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=ssl_context())
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    @staticmethod
    def _target(url: str, proxy: str | None) -> str:
        p = urlsplit(url)
        if proxy is not None and p.scheme == "http":
            return url.split("#", 1)[0]  # absolute form through a forward proxy
        return (p.path or "/") + (f"?{p.query}" if p.query else "")

    def keep(self, key: tuple[str, str, int, str]) -> None:
        with self._lock:
            if key in self._conns:
                self._idle.add(key)

    def drop(self, key: tuple[str, str, int, str]) -> None:
        with self._lock:
            conn = self._conns.pop(key, None)
            self._idle.discard(key)
            self._socks.pop(key, None)
        if conn is not None:
            conn.close()

    def get(self, url: str, headers: Mapping[str, str], method: str = "GET") -> Response:
        """One request, no redirect followed. A stale kept-alive connection is retried once on a new one. The
        answer's `waited` is the time from the request sent to its headers (the connection opened before: one round
        trip and the server's think time, what a piece pays per request)."""
        for _ in range(2):
            key, conn, target, reused = self._connection(url)
            try:
                if conn.sock is None:
                    conn.connect()
                with self._lock:
                    self._socks[key] = conn.sock
                sent = time.monotonic()
                conn.request(method, target, headers={**headers, **self._proxy_headers.get(key, {})})
                resp = conn.getresponse()
                waited = time.monotonic() - sent
            except ssl.SSLCertVerificationError as exc:
                self.drop(key)
                raise Fatal(f"TLS certificate of {where(url)} not trusted: {exc.verify_message}") from None
            except ValueError:  # http.client rejects a bad header value, i.e. maybe the token: never show it
                self.drop(key)
                raise Fatal("a request header has a value HTTP cannot carry (value not shown)") from None
            except (OSError, http.client.HTTPException) as exc:
                self.drop(key)
                if reused and isinstance(exc, (http.client.RemoteDisconnected, ConnectionError)):
                    continue  # the server closed the idle connection: not a failure of this request
                raise Retry(f"{describe(exc)} ({where(url)})") from None
            answer = Response(self, key, resp, url)
            answer.waited = waited
            return answer
        raise Retry(f"connection closed by {where(url)}")

    def open(self, url: str, headers: Mapping[str, str], *, home: str | None = None) -> Response:
        """GET `url`, following redirects; `Authorization` only ever goes to the origin of `home` (default `url`):
        a signed CDN URL resolved earlier is opened with `home` the Hub's URL, so the token stays with the Hub."""
        first = origin(home or url)
        for _ in range(MAX_REDIRECTS + 1):
            same = origin(url) == first
            hdrs = {k: v for k, v in headers.items() if same or k.lower() != "authorization"}
            resp = self.get(url, hdrs)
            if resp.status not in REDIRECT_STATUS:
                return resp
            location = resp.headers.get("location")
            drain(resp)
            if not location:
                raise Retry(f"{resp.status} redirect without a Location from {where(url)}")
            url = urljoin(url, location.strip())
        raise Fatal(f"more than {MAX_REDIRECTS} redirects from {where(url)}")

    def abort(self, key: tuple[str, str, int, str] | None = None) -> None:
        """Make a read blocked in another thread return now: on the connection `key`, else on all."""
        with self._lock:
            socks = list(self._socks.values()) if key is None else [s for k, s in self._socks.items() if k == key]
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
            self._idle.clear()
            self._socks.clear()
        for conn in conns:
            conn.close()


def drain(resp: Response, limit: int = 64 * 1024) -> None:
    """Read a small body (a redirect's, an error's) so its connection can serve the next request."""
    buf = memoryview(bytearray(16 * 1024))
    total = 0
    try:
        while total < limit:
            n = resp.readinto(buf)
            if not n:
                break
            total += n
    except (OSError, http.client.HTTPException):
        pass
    resp.release()


def words(resp: Response, limit: int = 4096) -> str:
    """What an error answer's body says, in one short line: a JSON `error` or `message`, an XML `<Message>` (S3,
    CloudFront), else its text without tags. Read before `drain`, which then discards the rest."""
    buf = memoryview(bytearray(limit))
    got = 0
    try:
        while got < limit and (n := resp.readinto(buf[got:])):
            got += n
    except (OSError, http.client.HTTPException):
        pass
    text = bytes(buf[:got]).decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        text = str(doc.get("error") or doc.get("message") or "")
    else:
        m = re.search(r"<Message>(.*?)</Message>", text, re.S)
        text = m.group(1) if m else re.sub(r"<[^>]*>", " ", text)
    text = " ".join("".join(c for c in text if c.isprintable()).split())
    return text if len(text) <= 160 else text[:157] + "..."


def refusal(resp: Response, asked: str) -> Retry | HttpRefused:
    """What a download's answer other than a 200 or 206 means, for the file asked at `asked`: a Retry for what
    another attempt may fix (a CDN's 403 for a signed URL that expired or is bound to another range: a fresh one
    from /resolve, at once; 408, 429 and 5xx, with their Retry-After), HttpRefused for a 4xx the caller classifies."""
    status, at = resp.status, where(resp.url)
    retry_after = resp.headers.get("retry-after", "").strip()
    if status == 403 and origin(resp.url) != origin(asked):
        said = words(resp)
        return Retry(f"403 from the CDN {at}" + (f' ("{said}")' if said else ""), fresh_url=True, status=403)
    if status in RETRYABLE_STATUS or status >= 500:
        return Retry(
            f"{status} {resp.reason} from {at}".replace("  ", " "),
            float(retry_after) if retry_after.isdigit() else None,
            status=status,
        )
    if 400 <= status < 500:
        return HttpRefused(status, resp.headers, resp.url)
    return Retry(f"unexpected answer {status} {resp.reason} from {at}")
