"""The token never leaks: looked for (whole and any 10 characters of it) in every process's argv and
environment while setup.sh runs, in all output (also with debug logging and `bash -x`), and in every
file written; through every token source and every outcome."""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import Env, Result, assert_no_secret

SOURCES = ("stdin", "env", "dotenv", "stored")
OUTCOMES = {
    "success": (0, "accepted_read"),
    "invalid": (4, "invalid"),
    "not_accepted": (5, "not_accepted"),
    "pending": (5, "pending"),
    "repo_missing": (6, "accepted_read"),
    "unreachable": (7, "accepted_read"),
    "integrity": (8, "accepted_read"),
}


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    return int(stat[stat.rindex(b")") + 2 :].split()[1])  # the field after the state; comm may hold spaces


class ProcWatch:
    """Samples /proc/*/cmdline and /proc/*/environ every few milliseconds, of this test's processes only
    (descendants of this one: other test runs on the machine may carry the same canary tokens)."""

    def __init__(self) -> None:
        self.argv: set[bytes] = set()
        self.environ: dict[int, bytes] = {}
        self.cmdline: dict[int, bytes] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _ours(self, pid: int, me: int) -> bool:
        for _ in range(64):
            pid = _parent(pid)
            if pid == me:
                return True
            if pid <= 1:
                return False
        return False

    def _loop(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit() or int(entry.name) == me or not self._ours(int(entry.name), me):
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                        argv = f.read()
                    with open(f"/proc/{entry.name}/environ", "rb") as f:
                        self.environ[int(entry.name)] = f.read()
                except OSError:
                    continue
                self.argv.add(argv)
                self.cmdline[int(entry.name)] = argv
            self.samples += 1
            time.sleep(0.002)

    def __enter__(self) -> ProcWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def witnesses(env: Env) -> Iterator[Path]:
    """Fake curl, git and python first on PATH: each logs its argv, then runs the real one."""
    fake = env.home / "fakebin"
    fake.mkdir(exist_ok=True)
    log = env.home / "argv.log"
    for name, real in (("curl", "/usr/bin/curl"), ("git", "/usr/bin/git"), ("python3", sys.executable)):
        script = fake / name
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> "{log}"\nexec "{real}" "$@"\n')
        script.chmod(0o755)
    yield fake


def run_with(env: Env, source: str, token: str, *args: str, extra: dict[str, str] | None = None) -> Result:
    environ = dict(extra or {})
    stdin = None
    argv = list(args)
    if source == "stdin":
        argv.append("--token-stdin")
        stdin = token.encode()
    elif source == "env":
        environ["HF_TOKEN"] = token
    elif source == "dotenv":
        env.write_env(f"HF_TOKEN={token}\n")
    elif source == "stored":
        env.store_login(token)
    return env.run(*argv, env=environ, stdin=stdin)


def scan_files(token: str, roots: list[Path], allowed: set[Path]) -> None:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.resolve() not in allowed:
                assert_no_secret(token, path.read_bytes().decode("latin-1"))


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_token_never_leaks(env: Env, tokens: dict[str, str], source: str, outcome: str, tmp_path: Path) -> None:
    code, name = OUTCOMES[outcome]
    token = tokens[name]
    args: list[str] = []
    extra: dict[str, str] = {"TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    if outcome == "repo_missing":
        args += ["--model", "fishaudio/missing"]
    if outcome == "unreachable":
        extra["HF_ENDPOINT"] = "http://127.0.0.1:9"
    if outcome == "integrity":
        env.hub.add_fault("model.pth", flip_at=5, times=None, method="GET")
    with witnesses(env) as fake:
        extra["PATH"] = f"{fake}:{os.environ['PATH']}"
        extra["PYTHON"] = str(fake / "python3")
        with ProcWatch() as watch:
            r = run_with(env, source, token, *args, extra=extra)
    assert r.code == code, r.err
    assert watch.samples > 5
    assert_no_secret(token, r.text)
    for argv in watch.argv:
        assert_no_secret(token, argv.decode("latin-1"))
    for pid, environ in watch.environ.items():
        # With HF_TOKEN exported, the user's shell and setup.sh hold it; the helper gets it only on stdin.
        if source != "env" or b"auth_helper.py" in watch.cmdline.get(pid, b""):
            assert_no_secret(token, environ.decode("latin-1"))
    assert any(b"auth_helper.py" in argv for argv in watch.argv), "the helper must have been seen"
    log = env.home / "argv.log"
    assert log.is_file() and "python3" in log.read_text(), "the python witness must have run"
    assert_no_secret(token, log.read_text())
    allowed = {(env.project / ".env").resolve(), env.token_file.resolve()}
    scan_files(token, [env.home, tmp_path / "tmp", env.project, env.out_dir], allowed)


@pytest.mark.parametrize("source", SOURCES)
def test_debug_logging_never_prints_the_token(env: Env, tokens: dict[str, str], source: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import logging\nlogging.basicConfig(level=logging.DEBUG)\n")
    extra = {
        "HF_DEBUG": "1",
        "GATEDFETCH_DEBUG": "1",
        "HF_HUB_VERBOSITY": "debug",
        "PYTHONPATH": str(site),
    }
    r = run_with(env, source, tokens["accepted_read"], extra=extra)
    assert r.code == 0, r.err
    assert "DEBUG" in r.err, "debug logging must really have been on"
    assert_no_secret(tokens["accepted_read"], r.text)


@pytest.mark.parametrize("how", ["bash -x", "SHELLOPTS"])
@pytest.mark.parametrize("source", ["env", "stdin"])
def test_shell_tracing_never_prints_the_token(env: Env, tokens: dict[str, str], how: str, source: str) -> None:
    import subprocess

    environ = env.base_environ()
    stdin = None
    argv = ["bash", str(env.project / "setup.sh"), "--check", "--local-dir", str(env.out_dir)]
    if how == "bash -x":
        argv.insert(1, "-x")
    else:
        environ["SHELLOPTS"] = "xtrace"
    if source == "env":
        environ["HF_TOKEN"] = tokens["accepted_read"]
    else:
        argv.append("--token-stdin")
        stdin = tokens["accepted_read"].encode()
    proc = subprocess.run(argv, env=environ, input=stdin, capture_output=True, timeout=120,
                          stdin=None if stdin else subprocess.DEVNULL)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    assert "+ " in err, "tracing must really have been on"
    assert_no_secret(tokens["accepted_read"], err, proc.stdout.decode(errors="replace"))


def test_dotenv_is_parsed_never_executed(env: Env, tokens: dict[str, str]) -> None:
    marker = env.home / "pwned"
    env.write_env(
        f"touch {marker}\n$(touch {marker})\nHF_TOKEN={tokens['accepted_read']}\nX=`touch {marker}`\n"
    )
    r = env.run("--check")
    assert r.code == 0, r.err
    assert not marker.exists()


def test_env_file_readable_by_others_is_warned(env: Env, tokens: dict[str, str]) -> None:
    path = env.write_env(f"HF_TOKEN={tokens['accepted_read']}\n")
    path.chmod(0o644)
    r = env.run("--check")
    assert r.code == 0
    assert f"chmod 600 {path}" in r.err


def test_stored_token_readable_by_others_is_warned(env: Env, tokens: dict[str, str]) -> None:
    path = env.store_login(tokens["accepted_read"])
    path.chmod(0o644)
    r = env.run("--check")
    assert r.code == 0
    assert f"chmod 600 {path}" in r.err
    assert stat.S_IMODE(path.stat().st_mode) == 0o644, "the user's file is reported, not silently changed"


def test_the_process_witness_sees_a_leak_when_there_is_one(tokens: dict[str, str]) -> None:
    """The watcher above must be able to fail: a child with the token in argv and env is caught."""
    import subprocess

    token = tokens["invalid"]
    with ProcWatch() as watch:
        subprocess.run(["sh", "-c", f"sleep 0.3 # {token}"], env={"LEAK": token, "PATH": os.environ["PATH"]},
                       check=True)
    assert any(token.encode() in argv for argv in watch.argv)
    assert any(token.encode() in environ for environ in watch.environ.values())


def _boom_site(tmp_path: Path) -> Path:
    """A sitecustomize that makes whoami raise an unexpected error carrying the token."""
    site = tmp_path / "boom"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import huggingface_hub\n"
        "def whoami(self, token=None, **kw):\n"
        "    raise RuntimeError('boom with ' + str(token))\n"
        "huggingface_hub.HfApi.whoami = whoami\n"
    )
    return site


def test_unexpected_error_has_no_traceback_and_names_the_debug_variable(
    env: Env, tokens: dict[str, str], tmp_path: Path
) -> None:
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"], "PYTHONPATH": str(_boom_site(tmp_path))})
    assert r.code == 1
    assert "Traceback" not in r.text and "GATEDFETCH_DEBUG=1" in r.err
    assert_no_secret(tokens["accepted_read"], r.text)


def test_debug_traceback_masks_the_token(env: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    site = _boom_site(tmp_path)
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"], "PYTHONPATH": str(site), "GATEDFETCH_DEBUG": "1"})
    assert r.code == 1
    assert "Traceback" in r.err and "boom with hf_****" in r.err
    assert "re-run with GATEDFETCH_DEBUG=1" not in r.err  # it is on already
    assert "report it with the traceback above" in r.err
    assert_no_secret(tokens["accepted_read"], r.text)
