"""Every wait before the download is bounded and spoken.

huggingface_hub's requests get connect and read bounds, and the checks before the download (whoami,
the file list, the access check) one deadline as a whole; a wait longer than a few seconds prints a
line saying what it waits for. The download has its own timeouts and retries (gatedfetch.transfer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
from huggingface_hub import set_client_factory

from .settings import PHASE_ATTEMPTS, current

__all__ = ["PHASE_ATTEMPTS", "Deadline", "install_timeouts", "read_timeout", "speaking"]


def read_timeout() -> float:
    """Per wait for bytes (30 s; HF_HUB_ETAG_TIMEOUT, huggingface_hub's own knob for metadata, overrides)."""
    return current().read_timeout


class Deadline:
    """One deadline for everything asked before the download (whoami, repo info, access): a hub that
    trickles bytes forever never trips a read timeout, so the phase as a whole is bounded too. Made by
    `install_timeouts` for one run and handed to what asks the hub; `end()` when the download starts."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at: float | None = time.monotonic() + seconds

    def left(self) -> float | None:
        """Seconds left; None once the phase ended (the download's own timeouts apply then)."""
        return None if self.at is None else self.at - time.monotonic()

    def end(self) -> None:
        self.at = None


class _Bounded(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, deadline: Deadline) -> None:
        self.inner = inner
        self.deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            left = self.deadline.left()
            if left is not None and left <= 0:
                raise httpx2.ReadTimeout("the answer was still coming at the deadline")
            yield chunk

    def close(self) -> None:
        self.inner.close()


def _bound_request(request: httpx2.Request, deadline: Deadline) -> None:
    """Every request waits a bounded time, whatever the caller passed (a request event hook).

    huggingface_hub's default client has no timeout at all, and some of its calls pass `timeout=None`
    explicitly, which in httpx disables the client's own default (`HfApi.model_info`, and the paginated
    listings through `http_backoff`, in huggingface_hub 2.4): a hub that accepts and never answers would
    hang the setup forever. httpx hands each request's timeouts to the transport in the documented
    `timeout` extension (https://www.python-httpx.org/advanced/extensions/#request-extensions), after the
    request hooks ran: a missing bound gets ours here, and none outlives the phase deadline. (A custom
    transport would see them too, but giving one turns off the proxies from the environment.)
    """
    given = dict(request.extensions.get("timeout") or {})
    left = deadline.left()
    if left is not None and left <= 0:
        raise httpx2.ConnectTimeout("no time left before the deadline", request=request)
    connect = current().connect_timeout
    bounds = {"connect": connect, "read": read_timeout(), "write": current().write_timeout, "pool": connect}
    for key, bound in bounds.items():
        value = given.get(key)
        value = bound if value is None else min(float(value), bound)
        given[key] = value if left is None else max(0.1, min(value, left))
    request.extensions["timeout"] = given


def _timeouts_client(deadline: Deadline) -> httpx2.Client:
    # The same client as huggingface_hub's default, through its public factory hook, with bounded waits.
    # The request hook (it fixes the endpoint in URLs and logs in debug mode) is internal; keep it when present.
    def bound_response(response: httpx2.Response) -> None:
        """The body too ends by the phase deadline (a response hook runs before the body is read)."""
        if isinstance(response.stream, httpx2.SyncByteStream):
            response.stream = _Bounded(response.stream, deadline)

    hooks: dict[str, list[Any]] = {
        "request": [lambda request: _bound_request(request, deadline)],
        "response": [bound_response],
    }
    try:
        from huggingface_hub.utils._http import hf_request_event_hook

        hooks["request"].insert(0, hf_request_event_hook)
    except ImportError:
        pass
    return httpx2.Client(
        event_hooks=hooks,
        follow_redirects=True,
        timeout=httpx2.Timeout(read_timeout(), connect=current().connect_timeout),
    )


def install_timeouts() -> Deadline:
    """Bound every request huggingface_hub makes, and the whole phase before the download: the phase's deadline
    (100 s by default: --prepare ends within 2 minutes). huggingface_hub's client factory is its own process-wide
    setting (`set_client_factory`); the deadline it enforces is this run's object."""
    deadline = Deadline(current().phase_deadline)
    set_client_factory(lambda: _timeouts_client(deadline))
    return deadline


@contextmanager
def speaking(say: Callable[[str], None] | None, what: str, attempt: int, attempts: int) -> Iterator[None]:
    """While the body runs: after `speak_after` seconds, and every `speak_every` after that, say what we wait for."""
    if say is None:
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def watch() -> None:
        pause = current().speak_after
        while not done.wait(pause):
            waited = time.monotonic() - started
            say(f"hub: still waiting for {what}: {waited:.0f} s so far (attempt {attempt} of {attempts})")
            pause = current().speak_every

    watcher = threading.Thread(target=watch, name="gatedfetch-waiting", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
