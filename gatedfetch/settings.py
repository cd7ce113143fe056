"""Every wait the product makes, in one place: timeouts, retry counts and delays, the "still waiting" lines,
the deadline of the checks before the download. Standard library only.

The defaults are what a user gets. Each one can be overridden from the environment (a number; a value that is
not a number, or is negative, is ignored and the default stands); the tests shorten them this way, so that no
test waits on the wall clock for a hub that never answers:

    HF_HUB_ETAG_TIMEOUT               read_timeout      seconds a request waits for bytes (default 30; min 0.1;
    or GATEDFETCH_READ_TIMEOUT                          huggingface_hub reads HF_HUB_ETAG_TIMEOUT as a whole number,
                                                        GATEDFETCH_READ_TIMEOUT may be a fraction and wins)
    GATEDFETCH_CONNECT_TIMEOUT        connect_timeout   seconds to open a connection to the hub (default 10)
    GATEDFETCH_WRITE_TIMEOUT          write_timeout     seconds a request may take to send (default 30)
    GATEDFETCH_PHASE_SLACK            phase_slack       the checks before the download may take
                                                        PHASE_ATTEMPTS x read_timeout + this (default 10)
    GATEDFETCH_SPEAK_AFTER            speak_after       a wait longer than this prints a line (default 5) ...
    GATEDFETCH_SPEAK_EVERY            speak_every       ... and again every this many seconds (default 10)
    GATEDFETCH_HUB_BACKOFF            hub_backoff       first pause between attempts at the hub's API (default 0.5;
                                                        doubles each time)
    GATEDFETCH_HUB_PAUSE_CAP          hub_pause_cap     longest such pause, Retry-After included (default 10)
    GATEDFETCH_DOWNLOAD_TIMEOUT       download_timeout  seconds a download stream waits for bytes (default 30)
    GATEDFETCH_BACKOFF_BASE           backoff_base      first pause before a download piece is retried (default 0.5;
                                                        doubles each time ...)
    GATEDFETCH_BACKOFF_CAP            backoff_cap       ... up to this (default 8)
    GATEDFETCH_RETRY_AFTER_CAP        retry_after_cap   a server's Retry-After is honoured up to this (default 30)
    GATEDFETCH_STREAM_SAMPLE          stream_sample     seconds between two looks at the download's rate, two make
                                                        the window an added stream is judged over (default 0.15;
                                                        min 0.01)
    GATEDFETCH_SPEED_TIME             speed_time        a piece slower than its floor for this many seconds is cut and
                                                        asked again (default 10; as curl's --speed-time) ...
    GATEDFETCH_SPEED_LIMIT            speed_limit       ... the floor, bytes/s (default 16384; as curl's --speed-limit;
                                                        a tenth of the other streams' mean when that is more)
    GATEDFETCH_STALL_LINE             stall_line        no byte from anywhere for this long prints a line, and again
                                                        as long as it lasts (default 20)
    GATEDFETCH_STALL_DEADLINE         stall_deadline    no byte from anywhere for this long ends the run, exit 7
                                                        (default 60; retries happen meanwhile)
    GATEDFETCH_URL_MARGIN             url_margin        a signed CDN URL is replaced this long before it expires
                                                        (default 10; a quarter of its life when that is shorter)
    GATEDFETCH_VENV_WAIT              (setup.sh)        seconds setup.sh waits for another run building .venv
                                                        (default 600; read by setup.sh itself)

The counts (PHASE_ATTEMPTS, the download's retries) are fixed: they are part of what a user reads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

# The least each wait may be: a timeout of 0 would fail every request, a window of 0 every answer.
FLOORS = {"read_timeout": 0.1, "stream_sample": 0.01, "speed_time": 0.05, "stall_deadline": 0.05}
PHASE_ATTEMPTS = 3  # attempts at each question asked before the download
DOWNLOAD_RETRIES = 5  # attempts at each piece of a file, per stretch of progress


@dataclass(frozen=True)
class Settings:
    read_timeout: float = 30.0
    connect_timeout: float = 10.0
    write_timeout: float = 30.0
    phase_slack: float = 10.0
    speak_after: float = 5.0
    speak_every: float = 10.0
    hub_backoff: float = 0.5
    hub_pause_cap: float = 10.0
    download_timeout: float = 30.0
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    retry_after_cap: float = 30.0
    stream_sample: float = 0.15
    speed_time: float = 10.0
    speed_limit: float = 16384.0
    stall_line: float = 20.0
    stall_deadline: float = 60.0
    url_margin: float = 10.0

    @property
    def phase_deadline(self) -> float:
        """Seconds for all the checks before the download (100 by default: --prepare ends within 2 minutes)."""
        return PHASE_ATTEMPTS * self.read_timeout + self.phase_slack

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENVIRONMENT[f.name], "").strip()
            if not raw and f.name == "read_timeout":
                raw = environ.get("HF_HUB_ETAG_TIMEOUT", "").strip()
                if raw == "0":  # huggingface_hub's "default", and so here
                    continue
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                continue
            if value != value or value < 0 or value == float("inf"):  # NaN, negative, infinite: the default stands
                continue
            floor = FLOORS.get(f.name, 0.0)
            values[f.name] = max(floor, value)
        return cls(**values)


# Each setting's variable: GATEDFETCH_ and its name in capitals (read_timeout: else HF_HUB_ETAG_TIMEOUT,
# huggingface_hub's own knob for metadata).
ENVIRONMENT = {f.name: f"GATEDFETCH_{f.name.upper()}" for f in dataclasses.fields(Settings)}

_current: Settings | None = None


def current() -> Settings:
    """The settings of this process: read from the environment once, on first use."""
    global _current
    if _current is None:
        _current = Settings.from_environ()
    return _current


def use(settings: Settings | None) -> None:
    """Replace this process's settings (None: read the environment again on next use)."""
    global _current
    _current = settings
