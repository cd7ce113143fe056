"""Where a big file's bytes come from: the Hub's `/resolve` asked once, its signed CDN URL used for every piece.

The Hub answers `/resolve` of a big file with a `302` to a signed URL on its CDN (a CloudFront URL with
`Expires=<unix seconds>`, or an S3 one with `X-Amz-Date` and `X-Amz-Expires`). Asked *without* `Range`, that URL
is an ordinary presigned object URL: any range, any number of times, until it expires (browsers seeking in a
video, hf_transfer and aria2c rely on it; xet-core issue #897's thread). Asked *with* a `Range`, it may be bound
to that range. The Hub's API can be 100+ ms away (Europe to the US east) while the CDN edge is near, so a
`/resolve` per piece costs a far round trip each time; one per file costs it once.

So a `Location`:
* asks `HEAD /resolve` without `Range` the first time a stream needs the file (one stream asks, the others wait
  for its answer), following same-origin redirects (a relative `Location`, as the Hub gives for small files) and
  stopping at the first other origin: that URL is signed for GET and is never sent a HEAD;
* goes back to `/resolve` shortly before the URL's expiry (`margin`), measured from the `Date` of the answer that
  gave it, so a skewed local clock does not matter; and after a CDN `403` (expired, or refused);
* treats a `403` on a URL that came fresh from `/resolve` and never served a byte, after one refresh already, as
  a real refusal (`refused` returns False): no endless loop between `/resolve` and the CDN (hf_xet treats every
  403 as expiry and stalls for minutes: xet-core issue #956). Before giving up, the file falls back once to a
  `/resolve` per request with the piece's own `Range` (for a CDN that binds even an unranged URL to a range);
* where the Hub does not redirect (a mirror that serves the bytes itself) or does not answer HEAD (405, 501), is
  the `/resolve` URL itself, asked with each piece's `Range` and its redirects followed. Any other answer to the
  HEAD is judged as a piece's would be: a 4xx is the Hub's refusal, a 5xx or 429 is retried.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

from .http import REDIRECT_STATUS, Client, drain, origin, refusal, where

MAX_HOPS = 5
NO_HEAD = frozenset({405, 501})  # a server that does not answer HEAD


@dataclass(frozen=True)
class Url:
    """One URL to fetch a file's pieces from, and which generation of the file's location it is."""

    url: str
    generation: int
    direct: bool  # the /resolve URL itself: each request follows its own redirects


def expires_in(url: str, date: str | None, now: float) -> float | None:
    """Seconds the signed `url` stays good, judged against the `Date` of the answer that gave it (`now`, the
    local clock, when there is none); None when the URL names no expiry."""
    query = parse_qs(urlsplit(url).query)
    served_at = now
    try:
        parsed = email.utils.parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is not None and parsed.tzinfo is not None:
        served_at = parsed.timestamp()
    try:
        if "Expires" in query:
            return float(query["Expires"][-1]) - served_at
        if "X-Amz-Expires" in query:
            return float(query["X-Amz-Expires"][-1])  # counted from X-Amz-Date, i.e. when it was signed: now
    except ValueError:
        return None
    return None


class Location:
    """A file's signed URL, shared by every stream that fetches its pieces (thread-safe)."""

    def __init__(
        self,
        resolve_url: str,
        margin: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.resolve_url = resolve_url
        self.margin = margin
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._current: Url | None = None
        self._good_until = float("inf")
        self._stale = False  # a 403 asked for a fresh URL: the next get resolves anew
        self._served = False  # the current URL has served an answer
        self._refreshed = 0  # refreshes since the last URL that served
        self._direct = False  # a /resolve per request, for good

    @property
    def where(self) -> str:
        """The host the bytes come from (for messages), once known."""
        current = self._current
        return where(current.url if current is not None else self.resolve_url)

    def get(self, client: Client, headers: Mapping[str, str]) -> Url:
        """The URL to ask a piece from now: resolved when there is none, or when it is about to expire."""
        with self._lock:
            current = self._current
            if current is not None and not self._stale and (
                current.direct or self._clock() < self._good_until - self.margin
            ):
                return current
            generation = 1 if current is None else current.generation + 1
            url, direct, lifetime = self._resolve(client, headers)
            self._current = Url(url, generation, direct or self._direct)
            ttl = lifetime if lifetime is not None else float("inf")
            # A short-lived URL is refreshed a quarter of its life before its end, a long one `margin` before.
            self._good_until = self._clock() + ttl + self.margin - min(self.margin, ttl / 4)
            self._served = self._stale = False
            return self._current

    def served(self, used: Url) -> None:
        """`used` gave a good answer: it works (a later 403 on it is an expiry, worth a refresh)."""
        with self._lock:
            if self._current is not None and used.generation == self._current.generation:
                self._served = True
                self._refreshed = 0

    def refused(self, used: Url) -> bool:
        """The CDN answered 403 to `used`. True: ask again (a fresh URL comes from /resolve, or came meanwhile);
        False: a fresh URL was refused as well, after one refresh and one try of a /resolve per request: a real
        refusal."""
        with self._lock:
            current = self._current
            if current is None or used.generation != current.generation or self._stale:
                return True  # another stream refreshed it meanwhile, or has asked for it
            if not self._served and self._refreshed >= 1:
                if self._direct:
                    return False
                self._direct = True  # the CDN may bind even an unranged URL to a range: the old way, once
            self._refreshed += 1
            self._stale = True
            return True

    def _resolve(self, client: Client, headers: Mapping[str, str]) -> tuple[str, bool, float | None]:
        """(the URL, whether it is the /resolve URL itself, seconds it stays good)."""
        if self._direct:
            return self.resolve_url, True, None
        home = origin(self.resolve_url)
        url = self.resolve_url
        for _ in range(MAX_HOPS):
            resp = client.get(url, headers, method="HEAD")
            status, location, date = resp.status, resp.headers.get("location"), resp.headers.get("date")
            try:
                if status in REDIRECT_STATUS and location:
                    nxt = urljoin(url, location.strip())
                    if origin(nxt) != home:
                        return nxt, False, expires_in(nxt, date, self._wall())
                    url = nxt
                    continue
                if 200 <= status < 300 or status in NO_HEAD:
                    break  # served here (a mirror), or HEAD not answered: each piece asks /resolve itself
                raise refusal(resp, self.resolve_url)  # the Hub's own refusal, or a 5xx / 429 to retry
            finally:
                drain(resp)
        return self.resolve_url, True, None
