#!/usr/bin/env python3
"""Find Hugging Face tokens where they should not be, and say how to revoke them.

    python3 scripts/leak_audit.py [--project DIR] [--home DIR]

Looks in shell history files, in the project's git history (every commit of every branch), in the
project's files that other users can read, and for a .env tracked by git. Every finding is printed
masked (hf_****abcd, file, line). Exit 0: nothing found; 1: findings; 2: usage error.
Standard library only: it runs with any python3 >= 3.8, before or without the project's venv.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from gatedfetch.secret import TOKEN_SHAPE, mask  # noqa: E402  (standard library only, like this script)

# The product's one token shape, here standing alone (not inside a longer word).
TOKEN = re.compile(rf"(?<![A-Za-z0-9]){TOKEN_SHAPE.pattern}(?![A-Za-z0-9])")
HISTORY_FILES = (
    ".bash_history",
    ".zsh_history",
    ".zhistory",
    ".sh_history",
    ".history",
    ".python_history",
    ".local/share/fish/fish_history",
    ".psql_history",
)
SKIP_DIRS = {".git", ".venv", ".venv-test", "node_modules", "checkpoints", "__pycache__", ".mypy_cache"}
REVOKE = (
    "to revoke a leaked token: open https://huggingface.co/settings/tokens, choose the token's menu, "
    "'Invalidate and refresh' (or delete it), then update HF_TOKEN / `hf auth login` with the new one; "
    "removing it from history alone is not enough"
)


class Finding(NamedTuple):
    where: str
    line: int
    masked: str
    what: str


def is_placeholder(token: str) -> bool:
    """hf_xxxx… and the like in docs and tests: a real token is random, not two letters repeated."""
    return len(set(token[3:].lower())) <= 2


def scan_text(text: str, where: str, what: str) -> Iterator[Finding]:
    for number, line in enumerate(text.splitlines(), start=1):
        for match in TOKEN.finditer(line):
            if not is_placeholder(match.group(0)):
                yield Finding(where, number, mask(match.group(0)), what)


def scan_history(home: Path) -> Iterator[Finding]:
    paths = [home / name for name in HISTORY_FILES]
    histfile = os.environ.get("HISTFILE")
    if histfile:
        paths.append(Path(histfile))
    seen = set()
    for path in paths:
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        yield from scan_text(text, str(path), "shell history")


def git(project: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(["git", "-C", str(project), *args], capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None


def scan_git_history(project: Path) -> Iterator[Finding]:
    """Every added line of every commit: a token once committed stays in history after deletion."""
    done = git(project, "log", "--all", "-p", "--no-color", "--no-ext-diff", "--format=commit %H")
    if done is None or done.returncode != 0:
        return
    commit, path, new_line = "", "", 0
    for raw in done.stdout.decode("utf-8", errors="replace").splitlines():
        if raw.startswith("commit "):
            commit = raw[7:19]
        elif raw.startswith("+++ "):
            path = raw[6:] if raw.startswith("+++ b/") else raw[4:]
        elif raw.startswith("@@"):
            m = re.search(r"\+(\d+)", raw)
            new_line = int(m.group(1)) - 1 if m else 0
        elif raw.startswith("+"):
            new_line += 1
            for match in TOKEN.finditer(raw):
                if is_placeholder(match.group(0)):
                    continue
                yield Finding(f"git history: {path} in commit {commit}", new_line, mask(match.group(0)), "git")
        elif not raw.startswith("-"):
            new_line += 1


def scan_readable_files(project: Path) -> Iterator[Finding]:
    for root, dirs, files in os.walk(project):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            path = Path(root) / name
            try:
                st = path.lstat()
                if not stat.S_ISREG(st.st_mode) or not st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
                    continue
                if st.st_size > 5 * 1024 * 1024:
                    continue
                text = path.read_bytes().decode("utf-8", errors="replace")
            except OSError:
                continue
            for f in scan_text(text, str(path), "readable by others"):
                yield f._replace(what=f"readable by others (fix: chmod 600 {path})")


def scan_tracked_env(project: Path) -> Iterator[Finding]:
    done = git(project, "ls-files", "-z")
    if done is None or done.returncode != 0:
        return
    for name in done.stdout.decode("utf-8", errors="replace").split("\0"):
        base = name.rsplit("/", 1)[-1]
        if base == ".env" or (base.startswith(".env.") and base != ".env.example"):
            yield Finding(
                str(project / name), 0, "-", f"a .env file tracked by git (fix: git rm --cached {name}; commit)"
            )


def audit(project: Path, home: Path) -> list[Finding]:
    found: list[Finding] = []
    found += scan_history(home)
    found += scan_git_history(project)
    found += scan_readable_files(project)
    found += scan_tracked_env(project)
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--project", default=str(Path(__file__).resolve().parent.parent), help="project folder")
    p.add_argument("--home", default=str(Path.home()), help="home folder whose shell history is read")
    args = p.parse_args(argv)
    project, home = Path(args.project), Path(args.home)
    if not project.is_dir():
        print(f"error: --project {project}: not a folder", file=sys.stderr)
        return 2
    findings = audit(project, home)
    for f in findings:
        line = f":{f.line}" if f.line else ""
        print(f"{f.masked}  {f.where}{line}  [{f.what}]")
    if findings:
        print(f"\n{len(findings)} finding(s). {REVOKE}", file=sys.stderr)
        return 1
    print("no Hugging Face token found in shell history, git history, files readable by others, or a tracked .env",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
