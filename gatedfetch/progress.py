"""Progress reporting for file transfers: tqdm bars on a TTY, whole lines in logs, or nothing.

`make_progress(mode)` returns a `Progress`; every method is thread-safe (the transfer calls
`advance` from several worker threads at once). `advance` may be negative: when a server ignores
a Range request, the bytes reused from a partial file are thrown away and counted back.
Nothing here ever sees a URL, a header or a token: only repo paths and byte counts.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, TextIO

Mode = Literal["tty", "lines", "quiet"]

LINE_STEP_PERCENT = 10  # "lines" mode: a line every 10 % ...
LINE_STEP_SECONDS = 10.0  # ... or every 10 s, whichever comes first


class Progress:
    """The quiet reporter, and the interface the others implement."""

    def plan(self, total: int) -> None:
        """Announce the total bytes of every file to come (optional; improves the overall bar)."""

    def start_file(self, path: str, total: int, already: int) -> None:
        """A file of `total` bytes starts, `already` of them on disk from an earlier run."""

    def advance(self, path: str, nbytes: int) -> None:
        """`nbytes` more bytes of `path` are on disk (negative: that many were discarded)."""

    def end_file(self, path: str) -> None:
        """`path` is done (complete, failed or cancelled)."""

    def close(self) -> None:
        """No more files; release the output."""


def _size(n: float, total: int) -> str:
    """`n` in the unit that suits `total`: '680/1700 MB' reads better than mixed units."""
    if total >= 10_000_000:
        return f"{n / 1e6:.0f}"
    if total >= 1_000_000:
        return f"{n / 1e6:.1f}"
    if total >= 1_000:
        return f"{n / 1e3:.1f}"
    return f"{n:.0f}"


def _unit(total: int) -> str:
    return "MB" if total >= 1_000_000 else "kB" if total >= 1_000 else "B"


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class _FileState:
    total: int
    done: int
    started_at: float
    start_bytes: int  # bytes on disk when this run started on the file (for the speed)
    last_line_at: float
    last_line_step: int  # the last 10 % step a line was printed for
    ended: bool = False


class LinesProgress(Progress):
    """Whole lines for logs without a TTY (CI): never a carriage return, at most one line per
    file every ~10 % or ~10 s, plus a start and an end line."""

    def __init__(self, stream: TextIO, clock: Any = time.monotonic, quiet_below: int = 1_000_000) -> None:
        self._stream = stream
        self._quiet_below = quiet_below  # small files (config, README…) would only add noise to a log
        self._clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, _FileState] = {}

    def _emit(self, line: str) -> None:
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken log stream must not stop a download
            pass

    def _line(self, path: str, st: _FileState, now: float) -> str:
        pct = 100 * st.done // st.total if st.total else 100
        text = f"{path}: {pct}% {_size(st.done, st.total)}/{_size(st.total, st.total)} {_unit(st.total)}"
        elapsed = now - st.started_at
        moved = st.done - st.start_bytes
        if elapsed > 0 and moved > 0:
            speed = moved / elapsed
            text += f" {speed / 1e6:.0f} MB/s" if speed >= 10e6 else f" {speed / 1e6:.1f} MB/s"
            if st.done < st.total:
                text += f" ETA {_duration((st.total - st.done) / speed)}"
        return text

    def start_file(self, path: str, total: int, already: int) -> None:
        if total < self._quiet_below:
            return  # never registered: advance and end_file ignore it
        with self._lock:
            now = self._clock()
            step = (100 * already // total) // LINE_STEP_PERCENT if total else 0
            st = _FileState(total, already, now, already, now, step)
            self._files[path] = st
            if already >= total:
                return  # end_file prints the one line
            if already:
                self._emit(f"{path}: resuming at {self._line(path, st, now).split(': ', 1)[1]}")
            else:
                self._emit(f"{path}: starting, {_size(total, total)} {_unit(total)}")

    def advance(self, path: str, nbytes: int) -> None:
        with self._lock:
            st = self._files.get(path)
            if st is None or st.ended:
                return
            st.done = max(0, st.done + nbytes)
            if nbytes < 0:  # a discarded partial: the speed restarts from here
                st.start_bytes = min(st.start_bytes, st.done)
                st.last_line_step = 100 * st.done // st.total // LINE_STEP_PERCENT if st.total else 0
                return
            now = self._clock()
            step = (100 * st.done // st.total) // LINE_STEP_PERCENT if st.total else 0
            if st.done >= st.total:
                return  # end_file prints the 100 % line
            if step > st.last_line_step or now - st.last_line_at >= LINE_STEP_SECONDS:
                st.last_line_step = max(step, st.last_line_step)
                st.last_line_at = now
                self._emit(self._line(path, st, now))

    def end_file(self, path: str) -> None:
        with self._lock:
            st = self._files.get(path)
            if st is None or st.ended:
                return
            st.ended = True
            now = self._clock()
            if st.done >= st.total:
                if st.done == st.start_bytes:
                    self._emit(f"{path}: already complete, {_size(st.total, st.total)} {_unit(st.total)}")
                else:
                    line = self._line(path, st, now)
                    self._emit(f"{line} done in {_duration(now - st.started_at)}")
            else:
                self._emit(f"{path}: stopped at {self._line(path, st, now).split(': ', 1)[1]}")


class TtyProgress(Progress):
    """One tqdm bar per file in flight, plus an overall bar that stays on screen."""

    def __init__(self, stream: TextIO) -> None:
        from tqdm.auto import tqdm  # ships with huggingface_hub

        self._tqdm = tqdm
        self._stream = stream
        # A terminal that reports no size (a pty nobody sized, `docker run -t` in some setups) makes
        # tqdm draw bars of width 0 and hide every bar below row 0, i.e. nothing: assume 80x24 there.
        try:
            size = os.get_terminal_size(stream.fileno())
            sized = size.columns > 0 and size.lines > 0
        except (OSError, ValueError, AttributeError):
            sized = False
        self._width: dict[str, Any] = {"dynamic_ncols": True} if sized else {"ncols": 80, "nrows": 24}
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._planned = False
        self._overall: Any = tqdm(
            total=0,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="total",
            file=stream,
            position=0,
            leave=True,
            **self._width,
        )

    def plan(self, total: int) -> None:
        with self._lock:
            self._planned = True
            self._overall.total = total
            self._overall.refresh()

    def start_file(self, path: str, total: int, already: int) -> None:
        with self._lock:
            if not self._planned:
                self._overall.total = (self._overall.total or 0) + total
            self._overall.update(already)
            if already >= total:
                return
            name = path if len(path) <= 30 else "…" + path[-29:]
            self._bars[path] = self._tqdm(
                total=total,
                initial=already,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name,
                file=self._stream,
                leave=False,
                **self._width,
            )

    def advance(self, path: str, nbytes: int) -> None:
        with self._lock:
            self._overall.update(nbytes)
            bar = self._bars.get(path)
            if bar is not None:
                bar.update(nbytes)

    def end_file(self, path: str) -> None:
        with self._lock:
            bar = self._bars.pop(path, None)
            if bar is not None:
                bar.close()

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            self._overall.close()


def make_progress(mode: Mode, stream: TextIO | None = None) -> Progress:
    """`tty`: tqdm bars; `lines`: whole lines (CI logs); `quiet`: nothing."""
    out = sys.stderr if stream is None else stream
    if mode == "tty":
        return TtyProgress(out)
    if mode == "lines":
        return LinesProgress(out)
    if mode == "quiet":
        return Progress()
    raise ValueError(f"unknown progress mode {mode!r}")
