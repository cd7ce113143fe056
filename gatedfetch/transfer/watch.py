"""The two bounds on a transfer that a read timeout cannot give: a connection that sends a byte now and then resets
every read timeout, and a network gone black leaves sockets that neither answer nor close.

* `Pace`, per answer: a floor under its rate, as curl's `--speed-limit`/`--speed-time` and aria2c's
  `--lowest-speed-limit`. An answer that brings fewer than `floor` bytes/s over `speed_time` seconds is cut; its
  piece keeps what came and goes back to be asked again, on a fresh connection. The floor is the larger of
  `settings.speed_limit` and a tenth of the mean rate of a stream of the run (an edge that went sick is far below
  its neighbours long before it is below any fixed floor).
* `Silence`, per run: the time since a byte came from anywhere, while some stream is at work. Past
  `stall_line` it asks for a line (and again each `stall_line` after), past half of `stall_deadline` for every
  connection to be dropped and asked anew (a half-dead NAT entry or a new route may answer a new connection),
  past `stall_deadline` for the run to end (exit 7), naming what it waited for.

Both count bytes as they come off the socket (`heard`), not as whole buffers: a 1 MiB buffer fills in a minute at
16 KiB/s. Clocks are injected: the tests run them by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .http import Retry

FLOOR_SHARE = 0.1  # an answer below this share of a stream's mean rate is far below its neighbours


class Pace:
    """The rate floor of one answer. `heard(n)` comes from the thread reading the socket, `check()` from the one
    that waits on it; `check` raises Retry when the answer stayed under its floor for `speed_time`."""

    def __init__(
        self, speed_time: float, floor: Callable[[], float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.speed_time = speed_time
        self._floor = floor
        self._clock = clock
        self.arrived = 0  # written by the reading thread only
        self._since = clock()
        self._base = 0

    def heard(self, n: int) -> None:
        self.arrived += n

    def check(self, at: str = "") -> None:
        now = self._clock()
        span = now - self._since
        if span < self.speed_time:
            return
        got = self.arrived - self._base
        floor = self._floor()
        if got < floor * span:
            rate = got / span
            raise Retry(
                f"{rate / 1e3:.1f} kB/s for {span:.0f} s, under the floor of {floor / 1e3:.1f} kB/s"
                + (f" ({at})" if at else ""),
                slow=True,
            )
        self._since, self._base = now, self.arrived


@dataclass(frozen=True)
class Verdict:
    """What a long silence asks of the run: a line to print, the connections to drop, or the end."""

    silent_for: float
    line: bool = False
    nudge: bool = False
    end: bool = False


class Silence:
    """The run's watchdog: the time since any byte came, counted only while some stream is at work."""

    def __init__(self, line_every: float, deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.line_every = line_every
        self.deadline = deadline
        self._clock = clock
        self.last = clock()  # when a byte last came (or the streams last had nothing to wait for)
        self._lines = 0
        self._nudged = False

    def heard(self) -> None:
        """A byte came (any thread: one assignment)."""
        self.last = self._clock()

    def tick(self, busy: bool) -> Verdict | None:
        """Called every sample; `busy`: some stream holds work (a piece, a small file)."""
        now = self._clock()
        if not busy:
            self.last = now
        quiet = now - self.last
        if quiet < self.line_every and quiet < self.deadline / 2:
            self._lines, self._nudged = 0, False
            return None
        if quiet >= self.deadline:
            return Verdict(quiet, end=True)
        nudge = not self._nudged and quiet >= self.deadline / 2
        line = quiet >= (self._lines + 1) * self.line_every
        if line:
            self._lines = int(quiet // self.line_every)
        self._nudged = self._nudged or nudge
        return Verdict(quiet, line=line, nudge=nudge) if line or nudge else None
