"""When a failed attempt is asked again, and when the failures end the run: a bounded exponential backoff, a
server's Retry-After honoured (up to settings.retry_after_cap), an expired signed URL or a piece cut for its pace
asked again at once, and the failure once the attempts of a stretch are spent."""

from __future__ import annotations

import threading

from .. import failures
from ..settings import current
from .http import Retry
from .records import Cancelled


def _sleep(seconds: float, cancel: threading.Event) -> None:
    """Backoff sleep; tests replace it to record the delays instead of waiting."""
    if cancel.wait(seconds):
        raise Cancelled()


def pause(seconds: float, cancel: threading.Event) -> None:
    _sleep(seconds, cancel)


def before_retry(exc: Retry, fails: int, retries: int, endpoint: str, path: str, cancel: threading.Event) -> None:
    """After the `fails`-th failed attempt of `retries`: the failure when the budget is spent, else the backoff."""
    if fails >= retries:
        if exc.status == 429:
            raise failures.rate_limited(endpoint, path, exc.retry_after, True) from None
        cause = f"{exc.cause} after {fails} attempt{'s' if fails > 1 else ''}"
        raise failures.hub_unreachable(endpoint, cause) from None
    if exc.fresh_url or exc.slow:
        return  # an expired signed URL (a fresh one from /resolve), or a piece too slow: asked again at once
    waits = current()
    delay = min(waits.backoff_cap, waits.backoff_base * 2 ** (fails - 1))
    if exc.retry_after is not None:
        delay = min(waits.retry_after_cap, exc.retry_after)
    _sleep(delay, cancel)
