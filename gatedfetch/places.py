"""Where the project is on disk (standard library only; the flags, the failures' fix commands and the scripts
name paths under it)."""

from __future__ import annotations

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
