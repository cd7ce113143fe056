"""Where a run's time went: the environment (from setup.sh's start: .venv, Python, imports), the checks (token,
whoami, access, the file list, the plan) and the transfer (reuse and download), with the rate of what came over
the network. Standard library only. setup.sh tells the helper when it started in GATEDFETCH_STARTED (seconds
since the epoch); without it (the helper started by hand) the environment counts from the helper's own start."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

STARTED_VARIABLE = "GATEDFETCH_STARTED"


class Clock:
    def __init__(self, started: float | None = None, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self.helper = now()  # the helper's own start (its imports before this count as environment)
        ok = started is not None and 0 < started <= self.helper and self.helper - started < 24 * 3600
        self.started = started if ok and started is not None else self.helper
        self.transfer_from: float | None = None
        self.transfer_to: float | None = None
        self.fetched = 0
        self.streams: dict[str, float] | None = None  # {max, mean, final}: the download's streams (transfer.streams)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Clock:
        raw = (os.environ if environ is None else environ).get(STARTED_VARIABLE, "").strip()
        try:
            started = float(raw) if raw else None
        except ValueError:
            started = None
        return cls(started)

    def transfer_begins(self) -> None:
        self.transfer_from = self._now()

    def transfer_ends(self, fetched: int) -> None:
        self.transfer_to, self.fetched = self._now(), fetched

    def streams_used(self, usage: dict[str, float]) -> None:
        self.streams = usage

    def timings(self) -> dict[str, float]:
        """Seconds per part, rounded to milliseconds: environment, checks, transfer, total."""
        end = self._now()
        checks_end = self.transfer_from if self.transfer_from is not None else end
        transfer = (self.transfer_to or end) - self.transfer_from if self.transfer_from is not None else 0.0
        parts = {
            "environment": self.helper - self.started,
            "checks": checks_end - self.helper,
            "transfer": transfer,
            "total": end - self.started,
        }
        return {k: round(max(0.0, v), 3) for k, v in parts.items()}

    def summary(self, t: dict[str, float]) -> str:
        """'ready in 9.1 s: environment 2.0 s, checks 0.4 s, transfer 6.7 s at 540 MB/s over 41 streams (at most
        64)'."""
        rate = f" at {self.fetched / t['transfer'] / 1e6:.0f} MB/s" if self.fetched and t["transfer"] > 0 else ""
        if rate and self.streams and self.streams.get("max", 0) > 1:
            rate += f" over {self.streams['mean']:.0f} streams (at most {self.streams['max']:.0f})"
        elif rate and self.streams:
            rate += " over 1 stream"
        return (
            f"ready in {t['total']:.1f} s: environment {t['environment']:.1f} s, checks {t['checks']:.1f} s, "
            f"transfer {t['transfer']:.1f} s{rate}"
        )
