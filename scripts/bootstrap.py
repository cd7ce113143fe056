#!/usr/bin/env python3
"""Build the project's .venv from requirements.lock, for setup.sh: standard library only, any Python >= 3.10.

    python3 scripts/bootstrap.py PROJECT --ready             exit 0 when PROJECT/.venv is current (silent)
    python3 scripts/bootstrap.py PROJECT --base PY [--quiet]  build it with PY when it is not

One run at a time builds: the others wait on PROJECT/.venv.lock (flock, let go by the kernel when its holder
exits) and then use what it built. An unusable .venv (a file, a dangling link, a venv of Python 3.8, one whose
Python is gone) is rebuilt saying why; one built from another requirements.lock is rebuilt from scratch.
The packages come from requirements.lock with --require-hashes --no-deps, by the first installer that can put
them into the venv without ensurepip unpacking a pip into it:
  uv           when `uv` is on PATH: python -m venv --without-pip, then uv pip install --python .venv/bin/python
  pip          when PY has pip >= 22.3: python -m venv --without-pip, then PY -m pip --python .venv/bin/python
  ensurepip    otherwise: python -m venv (with pip), then .venv/bin/python -m pip install
GATEDFETCH_INSTALLER=uv|pip|ensurepip picks one; GATEDFETCH_VENV_WAIT=SECONDS bounds the wait for the lock.
Every failure is one message naming the cause and the next command, and an exit code from setup.sh's table.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

MIN_PY = (3, 10)
# The exit codes of gatedfetch/failures/kinds.py (bash setup.sh --help lists them), repeated: this runs before
# the venv and imports nothing of the package (tests/test_house.py checks that the two agree).
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_HUB_UNREACHABLE = 7  # the installer could not fetch the packages (the index is unreachable or failing)
EXIT_INTEGRITY = 8  # a package file does not match the sha256 in requirements.lock
EXIT_LOCAL_DISK = 9  # no space left, or the folder is not writable
EXIT_STOPPED = 130
INSTALLERS = ("uv", "pip", "ensurepip")
ASK_VERSION = 'import sys; v = sys.version_info; print("%d.%d" % (v[0], v[1]))'


class Stop(Exception):
    """The build cannot go on; the message has been said, `code` is the exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fail(code: int, message: str, *fix: str) -> Stop:
    say(f"error: {message}")
    for line in fix:
        say(line)
    return Stop(code)


def q(path: Path | str) -> str:
    return shlex.quote(os.fsdecode(path))


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run argv without input; its exit code and its stdout and stderr together."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, check=False)
    except OSError as exc:
        return 127, f"{argv[0]}: {exc.strerror}"
    return done.returncode, done.stdout.decode(errors="replace").rstrip("\n")


def lock_stamp(project: Path) -> str:
    return hashlib.sha256((project / "requirements.lock").read_bytes()).hexdigest()


def venv_problem(venv: Path, ask: bool = True) -> str:
    """Why .venv cannot be used as it is ("" when there is none, or it is a venv of a Python >= 3.10): another
    tool may have left it (an editor's Python 3.8), or the Python it was made with is gone."""
    if venv.is_symlink() and not venv.exists():
        return f"it is a symlink to {os.readlink(venv)}, which does not exist"
    if not venv.exists():
        return ""
    if not venv.is_dir():
        return "it is a file, not a folder"
    cfg = venv / "pyvenv.cfg"
    if not cfg.is_file():
        return "it is a folder but not a Python venv (no pyvenv.cfg)"
    exe = venv / "bin" / "python"
    if not exe.exists():
        if exe.is_symlink():
            return f"the Python it was made with is gone ({os.readlink(exe)} does not exist)"
        return "it has no bin/python"
    # pyvenv.cfg names the version it was made with (`version = 3.8.10`, or `version_info = 3.8.10.final.0`)
    made = re.search(r"^version(?:_info)? *= *(\d+)\.(\d+)", cfg.read_text(errors="replace"), re.MULTILINE)
    if made and (int(made[1]), int(made[2])) < MIN_PY:
        return f"it was made with Python {made[1]}.{made[2]} (>= 3.10 is needed)"
    if not ask:
        return ""
    code, said = run([str(exe), "-c", ASK_VERSION])
    if code != 0 or not re.fullmatch(r"\d+\.\d+", said):
        return "its bin/python does not run (the Python it was made with may have been removed or upgraded)"
    if tuple(int(n) for n in said.split(".")) < MIN_PY:
        return f"its bin/python is Python {said} (>= 3.10 is needed)"
    return ""


def venv_ready(project: Path, want: str, ask: bool = True) -> bool:
    """Is .venv a working venv built from the requirements.lock whose sha256 is `want`?"""
    stamp = project / ".venv" / ".lock.sha256"
    have = stamp.read_text().strip() if stamp.is_file() else ""
    return have == want and (project / ".venv").is_dir() and not venv_problem(project / ".venv", ask)


def free_kb(folder: Path) -> int:
    try:
        st = os.statvfs(folder)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize // 1024


def disk_failure(step: str, out: str, project: Path) -> Stop | None:
    """The failure of `step`, when its output `out` names a local-disk cause (not writable, no space)."""
    if any(words in out for words in ("Permission denied", "Read-only file system", "Operation not permitted")):
        return fail(EXIT_LOCAL_DISK, f"{step} failed: {project} is not writable",
                    f'fix: make it yours (sudo chown -R "$(id -un)" {q(project)}) or writable '
                    f"(chmod -R u+w {q(project)}),",
                    "     or clone the project into a folder you can write; then run bash setup.sh again")
    if "No space left on device" in out or "Disk quota exceeded" in out:
        tmp = (os.environ.get("TMPDIR") or "/tmp").rstrip("/")
        if f"{tmp}/" in out or free_kb(project) > 512000:
            return fail(EXIT_LOCAL_DISK, f"{step} failed: no space left in the temporary folder {tmp} (TMPDIR), "
                        "where Python unpacks pip",
                        f"fix: free some space there (df -h {q(tmp)}), or point TMPDIR at a disk with space:",
                        f"     TMPDIR={q(project)} bash setup.sh")
        return fail(EXIT_LOCAL_DISK, f"{step} failed: no space left on the disk that holds {project}",
                    f"fix: free some space there (df -h {q(project)} shows how much is left; .venv needs about 40 MB),",
                    "     then run bash setup.sh again")
    return None


def show_output(step: str, out: str) -> None:
    """The failed step's own words, indented, before the diagnosis."""
    if out:
        say(f"python: {step} said:")
        for line in out.splitlines():
            say(f"  {line}")


def take_lock(fd: int, venv: Path, quiet: bool) -> None:
    """flock(2) on fd, waiting at most GATEDFETCH_VENV_WAIT seconds; ends when setup.sh (its parent) does."""
    wait = float(os.environ.get("GATEDFETCH_VENV_WAIT") or 600)
    parent = os.getppid()

    def take() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        if take():
            return
        if not quiet:
            say(f"python: another setup.sh is building {venv}; waiting (up to {wait:.0f} s)…")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if os.getppid() != parent:
                raise Stop(EXIT_STOPPED)  # setup.sh was stopped (kill, SIGTERM): take nothing, say nothing
            if take():
                return
    except OSError as exc:
        raise fail(EXIT_FAILED, f"could not lock {venv}.lock to build {venv}: {exc.strerror}",
                   f"fix: check that {venv.parent} is on a local disk and writable, then run bash setup.sh again"
                   ) from None
    except KeyboardInterrupt:
        raise fail(EXIT_STOPPED, f"stopped while waiting for another setup.sh to build {venv}; nothing was changed",
                   "fix: run bash setup.sh again when you want it to go on") from None
    raise fail(EXIT_FAILED, f"gave up after {wait:.0f} s: another setup.sh is still building {venv}",
               "fix: let it finish (or stop it), then run bash setup.sh again; "
               "GATEDFETCH_VENV_WAIT=SECONDS waits longer")


def pip_version() -> tuple[int, ...]:
    """The version of the pip this Python (the base one: setup.sh runs this file with it) has; () when none."""
    from importlib import metadata

    try:
        return tuple(int(n) for n in re.findall(r"\d+", metadata.version("pip"))[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return ()


def choose_installer() -> str:
    chosen = os.environ.get("GATEDFETCH_INSTALLER", "")
    if chosen in INSTALLERS:
        return chosen
    if chosen not in ("", "auto"):
        raise fail(EXIT_USAGE, f"GATEDFETCH_INSTALLER={chosen} is none of uv, pip, ensurepip",
                   "fix: GATEDFETCH_INSTALLER=pip bash setup.sh (or unset it: setup.sh picks the fastest it has)")
    if shutil.which("uv"):
        return "uv"
    return "pip" if pip_version() >= (22, 3) else "ensurepip"


def make_venv(base: str, venv: Path, project: Path, installer: str, clear: bool) -> None:
    opts = (["--without-pip"] if installer != "ensurepip" else []) + (["--clear"] if clear else [])
    code, out = run([base, "-m", "venv", *opts, str(venv)])
    if code == 0:
        return
    show_output(f"{base} -m venv", out)
    ver = "{}.{}".format(*sys.version_info[:2])
    stop = disk_failure(f"{base} -m venv", out, project)
    if stop:
        raise stop
    # Debian's python3 without python3-venv says "...because ensurepip is not\navailable" (wrapped).
    if "ensurepip is not" in out or "No module named" in out or run([base, "-c", "import ensurepip, venv"])[0]:
        raise fail(EXIT_FAILED, f"{base} -m venv failed: the venv module (with ensurepip) is missing",
                   f"fix: sudo apt-get install python{ver}-venv   (or python3-venv), then run bash setup.sh again")
    raise fail(EXIT_FAILED, f"{base} -m venv failed (its message is above)",
               f"fix: check that {project} is writable and its disk has space (df -h {q(project)}); if the message",
               f"     names ensurepip: sudo apt-get install python{ver}-venv; then run bash setup.sh again")


def install(base: str, venv: Path, project: Path, installer: str) -> str:
    """Install requirements.lock into the venv; the installer's output (its warnings) when it succeeds."""
    lock = str(project / "requirements.lock")
    python = str(venv / "bin" / "python")
    env = None
    if installer == "uv":
        # uv reads UV_* settings, not pip's: the index a user gave pip is given to uv too.
        extra = [flag for var, flag in (("PIP_INDEX_URL", "--index-url"), ("PIP_EXTRA_INDEX_URL", "--extra-index-url"),
                                        ("PIP_FIND_LINKS", "--find-links")) if os.environ.get(var)
                 for flag in (flag, os.environ[var])]
        if os.environ.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes", "on"):
            extra.append("--no-index")
        argv = [shutil.which("uv") or "uv", "pip", "install", "--quiet", "--python", python, *extra]
        env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    elif installer == "pip":
        argv = [base, "-m", "pip", "--python", python, "install", "--disable-pip-version-check", "--quiet"]
    else:
        argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    if installer != "uv":
        argv.append("--no-compile")  # modules compile when first imported: most never are
    # --require-hashes: every file must match the sha256 the lock names; --no-deps: the lock lists them all.
    code, out = run([*argv, "--require-hashes", "--no-deps", "-r", lock], env)
    if code == 0:
        return out
    step = f"{'uv ' if installer == 'uv' else ''}pip install -r requirements.lock"
    show_output(step, out)
    stop = disk_failure(step, out, project)
    if stop:
        raise stop
    if "DO NOT MATCH THE HASHES" in out or "Hash mismatch" in out:
        raise fail(EXIT_INTEGRITY, f"{step} failed: a downloaded file is not the one the lock names (sha256)",
                   "fix: if you use a private index or proxy (PIP_INDEX_URL), it serves other files than PyPI: point "
                   "it", "     at PyPI or a faithful mirror; a changed requirements.lock is refreshed with "
                   "bash scripts/lock.sh")
    if code == 127 and installer == "uv":
        raise fail(EXIT_FAILED, f"{step} failed: uv did not run (its message is above)",
                   "fix: GATEDFETCH_INSTALLER=pip bash setup.sh   (or repair uv)")
    raise fail(EXIT_HUB_UNREACHABLE, f"{step} failed ({installer.replace('ensurepip', 'pip')}'s message is above)",
               "fix: check the network or proxy (PIP_INDEX_URL for a private index), then run bash setup.sh again;",
               "     or set PYTHON to an interpreter that already has huggingface_hub and python-dotenv")


# What the helper imports on a run (the re-run's few modules, and the checks' and transfer's).
HELPER_MODULES = "gatedfetch.cli, gatedfetch.flow, gatedfetch.recheck, gatedfetch.hub_client, gatedfetch.acquire"


def warm(venv: Path, project: Path) -> None:
    """Compile what the helper imports, once, into .venv's and the package's __pycache__.

    The installers are told not to compile (most of what they install is never imported), so the first run
    compiles what it imports, and Python keeps the result for the next ones; unless PYTHONDONTWRITEBYTECODE is
    set, as many container images do, and then every run would compile those ~270 modules again (0.36 s of a
    0.4 s re-run, measured on a 2-core machine). So they are compiled here, with that variable lifted for this
    one import. Best effort: a failure here only costs that time later."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return  # Python keeps what the first run compiles: nothing to do ahead of it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    try:
        subprocess.run([str(venv / "bin" / "python"), "-c", f"import {HELPER_MODULES}"], cwd=project, env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    except (OSError, subprocess.SubprocessError):
        pass


def build(project: Path, base: str, want: str, quiet: bool) -> None:
    """Make .venv current, holding the lock; a run that waited finds it current and builds nothing."""
    venv = project / ".venv"
    lock = Path(f"{venv}.lock")
    if os.path.lexists(lock) and not lock.is_file():  # a FIFO would block the open below forever
        raise fail(EXIT_LOCAL_DISK, f"{lock} is not a regular file, so it cannot be the lock that lets one setup.sh "
                   f"build {venv}", f"fix: rm {q(lock)}   (setup.sh makes it anew), then run bash setup.sh again")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise disk_failure(f"creating {lock}", str(exc), project) or fail(
            EXIT_FAILED, f"cannot create {lock}: {exc.strerror}",
            f"fix: check that {project} is writable, then run bash setup.sh again") from None
    try:
        take_lock(fd, venv, quiet)
        if venv_ready(project, want):
            return
        clear = False
        problem = venv_problem(venv)
        if problem:
            say(f"python: {venv} cannot be used: {problem}; building it anew")
        if problem and venv.is_symlink():
            venv.unlink()
        elif problem and (not venv.is_dir() or not (venv / "pyvenv.cfg").is_file()):
            aside = Path(f"{venv}.old")  # not a venv: kept aside, never deleted (it may be someone's)
            if os.path.lexists(aside):
                aside = Path(f"{venv}.old.{os.getpid()}")
            os.rename(venv, aside)
            say(f"python: moved it to {aside}")
        else:
            # A venv of another lock, or a broken one: nothing of it is kept (a link to a venv elsewhere is
            # someone's: installed into, not emptied).
            clear = venv.is_dir() and (bool(problem) or not venv.is_symlink())
        try:
            os.fsencode(project).decode("utf-8")
        except UnicodeDecodeError:
            raise fail(EXIT_LOCAL_DISK, f"the project's folder {project} has a name that is not UTF-8 text: "
                       "Python's venv and pip fail there",
                       f"fix: rename it (or the parent that has the odd name) to plain letters, e.g. mv {q(project)} "
                       "~/gatedfetch,", "     then run bash setup.sh again from there") from None
        installer = choose_installer()
        if not quiet:
            say(f"python: building {venv} with {base} and {installer} (once; re-runs skip this while "
                "requirements.lock is unchanged)")
        make_venv(base, venv, project, installer, clear)
        out = install(base, venv, project, installer)
        if out:
            say(out)
        warm(venv, project)
        (venv / ".lock.sha256").write_text(want + "\n")
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    project = Path(argv[0])
    if argv[1:] == ["--ready"]:  # run by .venv/bin/python, which setup.sh has seen is a Python >= 3.10
        try:
            return 0 if venv_ready(project, lock_stamp(project), ask=False) else 1
        except OSError:  # no requirements.lock, an unreadable stamp: the build run names it
            return 1
    base, quiet = argv[2], "--quiet" in argv[3:]
    wait = os.environ.get("GATEDFETCH_VENV_WAIT", "600")
    try:
        if not wait.isdigit():
            raise fail(EXIT_USAGE, f"GATEDFETCH_VENV_WAIT={wait} is not a whole number of seconds",
                       "fix: GATEDFETCH_VENV_WAIT=600 bash setup.sh (or unset it)")
        if not (project / "requirements.lock").is_file():
            raise fail(EXIT_FAILED, "requirements.lock is missing beside setup.sh (it lists the exact packages .venv "
                       "gets)", "fix: git checkout requirements.lock (or bash scripts/lock.sh to compile it), then run "
                       "bash setup.sh again")
        want = lock_stamp(project)
        if not venv_ready(project, want):
            build(project, base, want, quiet)
    except Stop as stop:
        return stop.code
    except KeyboardInterrupt:
        return EXIT_STOPPED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
