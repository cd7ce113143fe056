"""setup.sh started as users start it: by sh, sourced, through a symlink with CDPATH set, read from standard
input, with a PYTHON that is no Python, over a .venv another tool left, stopped while it waits."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, Result


def run(
    env: Env, argv: list[str], *, cwd: Path | None = None, extra: dict[str, str] | None = None,
    drop: tuple[str, ...] = (), stdin: bytes | None = None, timeout: float = 120,
) -> Result:
    """`argv` (a shell and its arguments, as a user types them) with the test's environment."""
    environ = env.base_environ()
    environ.update(extra or {})
    for name in drop:
        environ.pop(name, None)
    proc = subprocess.run(
        argv, cwd=cwd or env.project, env=environ, input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


# -- how the script is started ---------------------------------------------------------------------------


def test_sh_setup_sh_runs_itself_with_bash_and_completes(env: Env, tokens: dict[str, str]) -> None:
    r = run(env, ["sh", "setup.sh", "--check", "--local-dir", str(env.out_dir)],
            extra={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "Illegal option" not in r.err
    assert "would succeed" in r.text or "ready" in r.text


def test_source_refuses_in_one_line_and_leaves_the_shell_as_it_was(env: Env) -> None:
    script = (
        'before="$(set +o; shopt -p)"; source ./setup.sh --check; rc=$?; after="$(set +o; shopt -p)"; '
        '[[ "$before" == "$after" ]] && echo "options unchanged"; echo "rc=$rc"; false; echo "still here"'
    )
    r = run(env, ["bash", "-c", script])
    assert "options unchanged" in r.out and "rc=2" in r.out and "still here" in r.out, r.text
    assert r.err.strip().splitlines() == ["error: setup.sh is run, not sourced (it sets nothing in this shell); "
                                          "run: bash ./setup.sh"]


def test_dot_in_sh_refuses_and_the_shell_goes_on(env: Env) -> None:
    r = run(env, ["sh", "-c", '. ./setup.sh; echo "rc=$? still here"'])
    assert "rc=2 still here" in r.out, r.text
    assert "run: bash setup.sh" in r.err


def test_a_symlink_from_another_folder_with_cdpath_exported(env: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "scripts").mkdir(parents=True)  # a scripts/ folder there must not be the one used
    (elsewhere / "get-model").symlink_to(env.project / "setup.sh")
    r = run(env, ["bash", "get-model", "--check", "--local-dir", str(env.out_dir)], cwd=elsewhere,
            extra={"HF_TOKEN": tokens["accepted_read"], "CDPATH": f".:{tmp_path}"})
    assert r.code == 0, r.err
    assert "No such file" not in r.err


def test_read_from_standard_input_names_the_fix(env: Env) -> None:
    r = run(env, ["bash"], stdin=(env.project / "setup.sh").read_bytes())
    assert r.code == 2
    assert "cannot know the project folder" in r.err and "bash setup.sh" in r.err
    assert "unbound variable" not in r.err


def test_an_odd_variable_stops_before_huggingface_hub_is_imported(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"], "HF_HUB_ETAG_TIMEOUT": "1e12"})
    assert r.code == 2, r.err
    assert "HF_HUB_ETAG_TIMEOUT='1e12' is not a whole number of seconds" in r.err
    assert "unexpected" not in r.err and "Traceback" not in r.err
    assert not env.hub.requests  # nothing was asked


def test_a_pasted_endpoint_with_a_newline_works(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"], "HF_ENDPOINT": env.hub.url + "\n"})
    assert r.code == 0, r.err
    assert any("whoami" in q.path for q in env.hub.requests)


# -- PYTHON, and the .venv as another tool may have left it ---------------------------------------------


@pytest.mark.parametrize(
    ("python", "words"),
    [
        ("/bin/true", "is not a Python interpreter"),
        ("/nonexistent/python3", "no such program"),
        ("/bin/sh", "is not a Python interpreter"),
    ],
)
def test_python_that_is_no_usable_python_is_exit_2_naming_it(env: Env, python: str, words: str) -> None:
    r = env.run("--check", "--json", env={"PYTHON": python})
    assert r.code == 2, r.err
    assert f"PYTHON={python} {words}" in r.err or f"PYTHON={python}: {words}" in r.err
    assert "unset it to let setup.sh build .venv" in r.err


def no_python_path(tmp_path: Path) -> str:
    """A PATH with the tools setup.sh uses and no Python at all (as from cron or a bare CI step)."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "sh", "dirname", "env", "cat", "rm", "mv", "sed", "head", "readlink", "df", "awk"):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    return str(tools)


def fake_venv(project: Path, version: str, python: str) -> Path:
    """A .venv as a tool may leave it: pyvenv.cfg naming `version`, bin/python a script running `python`,
    stamped with the current requirements.lock (so only its interpreter can make it unusable)."""
    venv = project / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n")
    exe = venv / "bin" / "python"
    exe.write_text(f'#!/bin/sh\nexec {python} "$@"\n')
    exe.chmod(0o755)
    digest = hashlib.sha256((project / "requirements.lock").read_bytes()).hexdigest()
    (venv / ".lock.sha256").write_text(digest + "\n")
    return venv


def test_a_ready_venv_needs_no_python_on_path(env: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    fake_venv(env.project, "3.11.7", sys.executable)
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"], "PATH": no_python_path(tmp_path)},
                drop=("PYTHON",))
    assert r.code == 0, r.err
    assert "no Python" not in r.err and "building" not in r.err
    assert any("whoami" in q.path for q in env.hub.requests)


def test_a_venv_made_by_python_3_8_is_rebuilt_saying_why(
    env: Env, tokens: dict[str, str], wheelhouse: dict[str, str]
) -> None:
    """The rebuild runs for real (`python -m venv --clear`, the locked packages from a local folder of their
    files) and the run goes on with it to the end."""
    venv = fake_venv(env.project, "3.8.10", sys.executable)
    r = env.run("--check", "--quiet", env={"HF_TOKEN": tokens["accepted_read"], **wheelhouse}, drop=("PYTHON",),
                timeout=300)
    assert "cannot be used: it was made with Python 3.8 (>= 3.10 is needed); building it anew" in r.err
    assert "version = 3.8" not in (venv / "pyvenv.cfg").read_text()  # a new venv
    assert "python: building" not in r.err  # --quiet
    assert r.code == 0, r.err  # rebuilt, and the run went on with it


@pytest.mark.parametrize("kind", ["file", "dangling symlink", "interpreter gone"])
def test_a_venv_that_is_no_venv_is_found_out(env: Env, tmp_path: Path, kind: str) -> None:
    venv = env.project / ".venv"
    if kind == "file":
        venv.write_text("my-env\n")
        said = "it is a file, not a folder"
    elif kind == "dangling symlink":
        venv.symlink_to(tmp_path / "gone")
        said = f"it is a symlink to {tmp_path / 'gone'}, which does not exist"
    else:
        fake_venv(env.project, "3.11.7", sys.executable)
        (venv / "bin" / "python").unlink()
        (venv / "bin" / "python").symlink_to("/nonexistent/python3.11")
        said = "the Python it was made with is gone"
    # the rebuild is stopped right after the diagnosis: a base Python whose venv module fails at once
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\ncase "$*" in *"-m venv"*) echo "venv: stopped by the test" >&2; exit 1;; esac\n'
                    f'exec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    r = env.run("--check", env={"PATH": f"{fake.parent}:{no_python_path(tmp_path)}"}, drop=("PYTHON",))
    assert f"cannot be used: {said}" in r.err, r.err
    assert "venv: stopped by the test" in r.err  # the rebuild was attempted
    if kind == "file":
        assert (env.project / ".venv.old").read_text() == "my-env\n"  # kept aside, not deleted


def test_a_fifo_at_the_lock_is_named_not_waited_on(env: Env) -> None:
    os.mkfifo(env.project / ".venv.lock")
    r = env.run("--check", drop=("PYTHON",), timeout=30)
    assert r.code == 9
    assert ".venv.lock is not a regular file" in r.err and "rm " in r.err


def alive(pid: str) -> bool:
    """Is process `pid` still running (an exited one not yet reaped is a zombie: state Z)?"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@contextlib.contextmanager
def waiting_for_another_builder(env: Env) -> Iterator[subprocess.Popen[bytes]]:
    """setup.sh started while another builder holds .venv.lock, once it said it waits; the lock is let go after."""
    lock = open(env.project / ".venv.lock", "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        proc = env.start("--check", env={"PYTHON": ""}, output=subprocess.PIPE)
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert "waiting" in line, line  # it waits
        yield proc
    finally:
        lock.close()


def test_sigterm_while_waiting_ends_the_waiter_too(env: Env) -> None:
    with waiting_for_another_builder(env) as proc:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children  # the waiter
        proc.send_signal(signal.SIGTERM)  # to setup.sh only, as `kill PID` does
        proc.wait(timeout=5)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and any(alive(c) for c in children):
            time.sleep(0.05)
        assert not any(alive(c) for c in children), "the waiter outlived setup.sh"
    assert not (env.project / ".venv").exists()


def test_ctrl_c_while_waiting_says_it_stopped_not_a_disk_problem(env: Env) -> None:
    with waiting_for_another_builder(env) as proc:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        _, err = proc.communicate(timeout=10)
    said = err.decode()
    assert proc.returncode == 130, said
    assert "stopped while waiting" in said and "local disk" not in said and "Traceback" not in said
    assert not (env.project / ".venv").exists()


def test_a_full_tmpdir_is_blamed_not_the_project(env: Env, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(  # ensurepip unpacking into a full TMPDIR, as Python words it
        f'#!/bin/sh\ncase "$*" in *"-m venv"*) echo "OSError: [Errno 28] No space left on device: '
        f"'{tmp}/tmpab12/pip.whl'\" >&2; exit 1;; esac\nexec {sys.executable} \"$@\"\n"
    )
    fake.chmod(0o755)
    r = env.run("--check", env={"PATH": f"{fake.parent}:{no_python_path(tmp_path)}", "TMPDIR": str(tmp)},
                drop=("PYTHON",))
    assert r.code == 9, r.err
    assert f"no space left in the temporary folder {tmp} (TMPDIR)" in r.err
    assert "TMPDIR=" in r.err and "bash setup.sh" in r.err


def test_a_folder_name_that_is_not_utf8_is_named(env: Env, tmp_path: Path) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    shutil.copytree(env.project, odd)
    r = run(env, ["bash", str(odd / "setup.sh")], cwd=tmp_path, drop=("PYTHON",))  # surrogates: the raw bytes
    assert r.code == 9, r.err
    assert "is not UTF-8 text" in r.err and "rename it" in r.err
