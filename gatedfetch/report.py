"""Human lines on stderr as the run goes, and its `Outcome` once at the end: as the closing error lines
and, with --json, as the one JSON document on stdout. Every line passes through the run's `secret.Redactor`.

Besides this module only two things write to the terminal: the hidden token prompt (prompt.py, which
must talk to the TTY itself) and the progress bars (progress.py, driven by the transfer).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import TextIO

from .failures import Failure
from .outcome import Outcome
from .secret import Redactor
from .timing import Clock


class Reporter:
    def __init__(
        self,
        *,
        quiet: bool = False,
        json_mode: bool = False,
        err: TextIO | None = None,
        out: TextIO | None = None,
        redact: Redactor | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.quiet = quiet
        self.json_mode = json_mode
        self.err = err or sys.stderr  # human lines
        self.out = out or sys.stdout  # the JSON document
        self.redact = redact or Redactor()  # every token the run found: never printed whole
        self.clock = clock or Clock()  # where the run's time went: said on the last line, in --json's timings
        self.colour = self.err.isatty() and not os.environ.get("NO_COLOR")
        self.warnings: list[str] = []
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        # One write per line, under a lock: lines said by two threads at once (the checks run side by side)
        # never share a line.
        try:
            with self._lock:
                self.err.write(text + "\n")
                self.err.flush()
        except OSError:  # the reader went away (a closed pipe): the run goes on, its exit code still counts
            pass

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def line(self, text: str) -> None:
        """A line said whatever --quiet says (an interruption, a debug traceback), secrets masked."""
        self._say(self.redact(text))

    def info(self, line: str) -> None:
        if not self.quiet:
            self._say(self.redact(line))

    def warn(self, line: str) -> None:
        self.warnings.append(line)
        if not self.quiet:
            self._say(f"{self._paint('33', 'warning:')} {self.redact(line)}")

    def failure(self, f: Failure) -> None:
        self._error(f.message, f.fix)

    def _error(self, message: str, fix: str) -> None:
        self._say(f"{self._paint('31', 'error:')} {self.redact(message)}")
        if fix:
            fix = self.redact(fix).replace("\n", "\n     ")  # continuation lines line up under the first
            self._say(f"{self._paint('36', 'fix:')} {fix}")

    def finish(self, outcome: Outcome) -> int:
        """Say how the run ended (the error, if any; the JSON document with --json); its exit code."""
        if outcome.error and not outcome.shown:
            self._error(str(outcome.error.get("message", "")), str(outcome.error.get("fix", "")))
        if not outcome.shown:
            outcome.warnings = self.warnings
            if outcome.exit_code == 0 and outcome.status in ("ready", "would_download", "needs_token"):
                outcome.timings = self.clock.timings()
                outcome.streams = self.clock.streams
                if outcome.status == "ready":
                    self.info(self.clock.summary(outcome.timings))
        if self.json_mode:
            try:
                self.out.write(self.redact(json.dumps(outcome.to_json(), indent=2, sort_keys=False)) + "\n")
                self.out.flush()
            except OSError as exc:  # e.g. `| head` closed the pipe: say so where we still can
                self._say(f"warning: the JSON document could not be written to standard output ({exc.strerror})")
                if self.out is sys.stdout:  # Python flushes it once more at exit, which would fail again
                    sys.stdout = open(os.devnull, "w")
        return outcome.exit_code
