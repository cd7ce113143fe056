"""How many streams fetch at once: as many as the link rewards, as few as the CDN tolerates.

A CDN caps each connection (the Hub's: 40-90 MB/s reported; a distant or busy edge much less), while a
machine's link may carry 10-100 Gbit/s: then speed comes from the number of streams. But every stream costs
CPU (on a 2-core machine, loopback: 16 streams were 3x slower than one), memory, and a connection the CDN
may refuse (429, 503) or reset. So the count is not fixed: it is steered while the transfer runs, by the
method TCP uses for its window (AIMD: additive increase, multiplicative decrease), with a gain test in front
of every increase, as hf_xet's adaptive concurrency also grows only while throughput grows.

The numbers behind it:

* **Start at START = 16** (capped by the ceiling, `--connections`, 64 by default): 16 was the fixed count
  before, enough where each connection gets 50 MB/s (16 x 50 MB/s is more than 2 cores verify and write).
* **Grow while it pays.** Every settings.stream_sample seconds (0.15 s) the pool reports the bytes that came
  in and the mean number of busy streams. After each change the samples covering ROUND_TRIPS = 3 of the link's
  round trip are skipped (at least one; new streams are still connecting and asking the CDN: far from the CDN
  that takes longer than a sample, and latency must not read as "no gain"), then WINDOW = 2 samples are
  averaged (0.3 s: one sample of 64 streams on a 2-core machine swings by +-40 %). An increase from n0 to n1
  streams is *kept* when the rate grew by at least GAIN = 0.25 of what the added streams would bring if each
  ran as fast as the old ones (rate1 - rate0 >= 0.25 x (n1 - n0) x rate0 / n0); then the next one follows. In
  slow start an increase multiplies the count by GROWTH = 4 (16 -> 64 in one step, 0.45 s after the fan-out: measured on
  a 2-core machine, 10 MB/s per connection, 1 GiB, doubling 16 -> 32 -> 64 cost 1.2x the time of a fixed 64,
  quadrupling 1.06-1.12x), until one goes unrewarded or the Hub objects; from then on each adds STEP = a
  quarter of the count (at least one).
* **An unrewarded increase is undone** down to the streams its gain paid for: n0 + (rate1 - rate0) /
  (rate0 / n0), never below n0 (the rate fell, or rose by less than a quarter of what it should: the CPU,
  the disk or the link is what runs out, not the streams), and no increase is tried for HOLD = 8 samples.
* **Shrink when the CDN objects.** A 429 or 503 cuts the count in half (REFUSED_CUT = 0.5, TCP Reno's
  factor) and makes one less than the streams then busy a cap this run never grows past (a per-client
  limit does not move during a run); growth waits at least the Hub's Retry-After. A reset, a timeout (a
  stalled stream) or another 5xx cuts it to three quarters (FAULT_CUT = 0.75, near CUBIC's 0.7): such faults
  also come from a flaky link, where fewer streams help less. One cut per sample interval: a burst of
  refusals answering one excess is one signal, not many (TCP: one cut per window).
* **The start is judged too**: the first file's probe (one stream) gives the rate the start count is
  judged against, as an increase from one stream; where 16 streams bring less than a quarter of 16 times
  one (loopback, a saturated CPU), the count falls back to the streams the gain paid for.
* A sample counts only when the streams were busy at least BUSY = 90 % of the target: during the probe,
  while one fast stream fetches a file alone, and in a file's tail there is not enough work to judge.

The functions here are pure: the state is a frozen `Control`, each observation returns the next one; the
pool (fetch.py) holds the state, feeds it, and lets that many streams take pieces (the others park and
close their connections).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

START = 16
GAIN = 0.25
GROWTH = 4
STEP = 0.25
HOLD = 8
REFUSED_CUT = 0.5
FAULT_CUT = 0.75
BUSY = 0.9
CPU_BUSY = 0.9  # growth stops where the streams would need more than this share of the machine's CPU
WINDOW = 2
ROUND_TRIPS = 3  # a change is judged once new streams have had this many round trips
BUFFER_BUDGET = 48 << 20  # all streams' read buffers together
MIN_BUFFER = 64 << 10


def buffer_size(ceiling: int, largest: int, per_stream: int) -> int:
    """The size of each of the `per_stream` read buffers of a stream but the first (which gets `largest`): `largest`
    while they fit BUFFER_BUDGET for `ceiling` streams, else halved until they do (never under MIN_BUFFER).
    64 streams: 256 KiB buffers, 25 ms of a 10 MB/s connection; 16 streams: 1 MiB, as before."""
    size = largest
    while size > MIN_BUFFER and size * per_stream * ceiling > BUFFER_BUDGET:
        size //= 2
    return size


@dataclass(frozen=True)
class Control:
    """The controller's state: how many streams may fetch now, and what it remembers to decide the next."""

    ceiling: int  # --connections: never more
    target: int  # streams allowed to fetch now
    cap: int  # never grow past this (one less than a count the CDN refused; the ceiling until then)
    doubling: bool = True  # slow start: increases double the count until one goes unrewarded or the CDN objects
    base: tuple[float, float] | None = None  # (busy streams, bytes/s) before the increase being judged
    skip: int = 1  # samples still to skip after a change (new streams still asking for their first bytes)
    # samples taken since, with their rates, busy streams and CPU shares summed
    window: tuple[int, float, float, float] = (0, 0.0, 0.0, 0.0)
    hold_until: float = 0.0  # no increase before this time (the Hub's Retry-After, or after an undone increase)
    cut_at: float = -math.inf  # when the last cut was made: one per sample interval
    settle: int = 1  # samples skipped after a change: long enough for ROUND_TRIPS of the link's round trip


def start(ceiling: int) -> Control:
    ceiling = max(1, ceiling)
    return Control(ceiling=ceiling, target=min(START, ceiling), cap=ceiling)


def _grow(c: Control, now: float, rate: float, busy: float, cpu: float = 0.0) -> Control:
    """The next increase, if the hold is over and there is room under the cap and in the CPU; judged at the sample
    after next. `cpu`: the share of the machine's CPU this process used meanwhile (0: not known)."""
    top = min(c.ceiling, c.cap)
    if cpu > 0:  # as many streams as the CPU left could feed at today's cost per stream, no more
        top = min(top, math.floor(c.target * CPU_BUSY / cpu))
    if now < c.hold_until or c.target >= top:
        return replace(c, base=None)
    step = c.target * (GROWTH - 1) if c.doubling else max(1, math.ceil(c.target * STEP))
    return replace(c, target=min(top, c.target + step), base=(busy, rate), skip=c.settle)


def on_sample(c: Control, now: float, rate: float, busy: float, interval: float, cpu: float = 0.0) -> Control:
    """A sample: `rate` bytes/s came in over the last `interval` seconds with `busy` streams busy on average, and
    this process used `cpu` of the machine's CPU (a share: 1.0 is every core busy; 0: not known)."""
    if c.skip > 0:
        return replace(c, skip=c.skip - 1, window=(0, 0.0, 0.0, 0.0))
    if busy < BUSY * c.target:
        return replace(c, window=(0, 0.0, 0.0, 0.0))  # not enough work for the streams allowed: nothing to learn
    k, rates, busies, cpus = c.window
    k, rates, busies, cpus = k + 1, rates + rate, busies + busy, cpus + cpu
    if k < WINDOW:
        return replace(c, window=(k, rates, busies, cpus))
    c = replace(c, window=(0, 0.0, 0.0, 0.0))
    rate, busy, cpu = rates / k, busies / k, cpus / k
    if c.base is not None:
        n0, r0 = c.base
        if r0 > 0 and busy > n0:
            per = r0 / n0
            if rate - r0 < GAIN * (busy - n0) * per:
                # Unrewarded, or not enough: keep only the streams the gain is worth at the old per-stream rate,
                # and wait before trying again, by small steps.
                worth = n0 + max(0.0, rate - r0) / per
                back = max(1, min(c.target, math.floor(worth)))
                return replace(
                    c, target=back, base=None, doubling=False, skip=c.settle, hold_until=now + HOLD * interval
                )
    return _grow(c, now, rate, busy, cpu)


def on_round_trip(c: Control, rtt: float, interval: float) -> Control:
    """The link's round trip is `rtt` seconds (the shortest wait for an answer seen): a change is judged only after
    ROUND_TRIPS of it, so that streams just added have had time to show their bytes (a far CDN's latency never
    reads as "no gain")."""
    settle = max(1, math.ceil(ROUND_TRIPS * rtt / interval)) if interval > 0 else 1
    if settle == c.settle:
        return c
    return replace(c, settle=settle, skip=max(c.skip, settle) if c.base is not None else c.skip)


def on_fan_out(c: Control, rate: float) -> Control:
    """The first file to fan out had its probe run at `rate` bytes/s on one stream: the start count is judged
    against it, as an increase from one stream (on loopback, or where the CPU already runs out, 16 streams do
    not bring 16 times one: the count falls back to what they paid for)."""
    if c.base is not None or not c.doubling or c.target <= 1 or rate <= 0:
        return c
    return replace(c, base=(1.0, rate), skip=c.settle, window=(0, 0.0, 0.0, 0.0))


def on_trouble(
    c: Control, now: float, busy: int, interval: float, *, refused: bool, retry_after: float | None = None
) -> Control:
    """A stream met trouble with `busy` streams busy: refused (429, 503: Retry-After `retry_after`), or another
    fault (a reset, a timeout, another 5xx, a cut body)."""
    cap = c.cap
    hold = c.hold_until
    if refused:
        if busy >= 2:
            cap = max(1, min(cap, busy - 1))
        hold = max(hold, now + max(retry_after or 0.0, interval))
    if now - c.cut_at < interval:  # cut once per interval: later news of the same excess only lowers the cap
        return replace(c, cap=cap, target=min(c.target, cap), hold_until=hold)
    cut = REFUSED_CUT if refused else FAULT_CUT
    target = max(1, min(cap, math.floor(min(busy, c.target) * cut)))
    return replace(c, target=target, cap=cap, doubling=False, base=None, skip=c.settle, hold_until=hold, cut_at=now)


@dataclass(frozen=True)
class Usage:
    """How many streams a run used: at most, on average while any was busy, and the count allowed at the end."""

    max: int = 0
    mean: float = 0.0
    final: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"max": self.max, "mean": round(self.mean, 1), "final": self.final}


class Steering:
    """The controller at work in a pool: its state, the busy streams (integrated over time) and the bytes.

    `started`, `stopped`, `sample`, `trouble`, `target` and `usage` are called with the pool's condition held
    (the pool's streams take pieces under it); `count` is called by every stream as bytes arrive, under a lock
    of its own."""

    def __init__(
        self,
        ceiling: int,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self.control = start(ceiling)
        self.interval = interval
        self._clock = clock
        self.busy = 0  # streams holding a piece
        self._since = clock()
        self._area = 0.0  # integral of `busy` over time ...
        self._busy_time = 0.0  # ... and the time any stream was busy
        self._max = 0
        self._bytes = 0
        self._bytes_lock = threading.Lock()
        self._sampled = (self._since, 0, 0.0)  # (time, bytes, busy area) at the last sample
        self._cpu = cpu  # this process's CPU seconds so far (all its threads)
        self._cpu_sampled = cpu()
        self._cores = os.cpu_count() or 1
        self.per_stream = 0.0  # bytes/s of a busy stream at the last sample (0: not known yet)

    @property
    def target(self) -> int:
        return self.control.target

    def _account(self, now: float) -> None:
        dt = now - self._since
        if dt > 0:
            self._area += self.busy * dt
            if self.busy:
                self._busy_time += dt
        self._since = now

    def started(self) -> None:
        """One stream more holds a piece."""
        self._account(self._clock())
        self.busy += 1
        self._max = max(self._max, self.busy)

    def stopped(self) -> None:
        """One stream let its piece go."""
        self._account(self._clock())
        self.busy -= 1

    def round_trip(self, rtt: float) -> None:
        self.control = on_round_trip(self.control, rtt, self.interval)

    def fanned_out(self, rate: float) -> None:
        self.control = on_fan_out(self.control, rate)

    def count(self, n: int) -> None:
        with self._bytes_lock:
            self._bytes += n

    def sample(self) -> None:
        """The rate and the mean busy streams since the last sample, to the controller."""
        with self._bytes_lock:
            got = self._bytes
        now = self._clock()
        self._account(now)
        t0, b0, a0 = self._sampled
        dt = now - t0
        if dt <= 0:
            return
        self._sampled = (now, got, self._area)
        used, self._cpu_sampled = self._cpu() - self._cpu_sampled, self._cpu()
        share = used / (dt * self._cores)
        rate, busy = (got - b0) / dt, (self._area - a0) / dt
        if busy >= 1:
            self.per_stream = rate / busy
        self.control = on_sample(self.control, now, rate, busy, dt, share)

    def trouble(self, status: int, retry_after: float | None) -> bool:
        """A stream met a refusal (`status` 429, 503) or another fault; True when that stream is now over the
        count (it lets its piece go and parks)."""
        refused = status in (429, 503)
        self.control = on_trouble(
            self.control, self._clock(), self.busy, self.interval, refused=refused, retry_after=retry_after
        )
        return self.busy > self.control.target

    def usage(self) -> Usage:
        self._account(self._clock())
        mean = self._area / self._busy_time if self._busy_time > 0 else float(self._max)
        # One owner, in order by construction: the count allowed at the end is no more than ever ran at once (a count
        # allowed but never filled, at the tail of the last file, was not used), the mean no more than the most.
        return Usage(self._max, min(mean, float(self._max)), min(self.control.target, self._max))
