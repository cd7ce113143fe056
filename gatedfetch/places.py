"""Where things are: the project on disk (the flags, the failures' fix commands and the scripts name paths under
it) and the `hf` command the next steps name. Standard library only."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def hf_command() -> str:
    """`hf` when it is on PATH; else the one in this interpreter's environment (setup.sh's .venv has it)."""
    if shutil.which("hf"):
        return "hf"
    beside = Path(sys.executable).parent / "hf"
    return str(beside) if beside.exists() else "hf"
