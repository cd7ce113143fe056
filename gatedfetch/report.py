"""Human lines on stderr, the JSON document on stdout. The only module that writes to the terminal."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from .failures import Failure
from .secret import redact


class Reporter:
    def __init__(self, *, quiet: bool = False, json_mode: bool = False, err: TextIO | None = None) -> None:
        self.quiet = quiet
        self.json_mode = json_mode
        self.err = err or sys.stderr
        self.colour = self.err.isatty() and not os.environ.get("NO_COLOR")
        self.doc: dict[str, Any] = {"status": "error", "exit_code": 1}
        self.ok_status = "ready"  # what `status` says on exit 0 (--check: "would_download", …)
        self.warnings: list[str] = []

    def _say(self, text: str) -> None:
        try:
            print(text, file=self.err, flush=True)
        except OSError:  # the reader went away (a closed pipe): the run goes on, its exit code still counts
            pass

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def info(self, line: str) -> None:
        if not self.quiet:
            self._say(redact(line))

    def warn(self, line: str) -> None:
        self.warnings.append(line)
        if not self.quiet:
            self._say(f"{self._paint('33', 'warning:')} {redact(line)}")

    def failure(self, f: Failure) -> None:
        self._say(f"{self._paint('31', 'error:')} {redact(f.message)}")
        if f.fix:
            fix = redact(f.fix).replace("\n", "\n     ")  # continuation lines line up under the first
            self._say(f"{self._paint('36', 'fix:')} {fix}")
        self.doc["error"] = f.as_dict()

    def set(self, **fields: Any) -> None:
        self.doc.update(fields)

    def finish(self, exit_code: int) -> int:
        self.doc["exit_code"] = exit_code
        self.doc["status"] = self.ok_status if exit_code == 0 else "error"
        self.doc["warnings"] = self.warnings
        if self.json_mode:
            try:
                sys.stdout.write(redact(json.dumps(self.doc, indent=2, sort_keys=False)) + "\n")
                sys.stdout.flush()
            except OSError as exc:  # e.g. `| head` closed the pipe: say so where we still can
                self._say(f"warning: the JSON document could not be written to standard output ({exc.strerror})")
                sys.stdout = open(os.devnull, "w")  # Python flushes stdout once more at exit
        return exit_code
