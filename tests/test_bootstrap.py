"""setup.sh's own job: find a Python, build .venv from requirements.lock once (one run at a time), name the
fix when it can't; and the check that keeps the locks in step with the requirements files.

The builds install from a folder of the locked packages' files, downloaded once per test session (`wheelhouse`):
setup.sh's own `pip install --require-hashes -r requirements.lock`, pointed there by pip's PIP_NO_INDEX and
PIP_FIND_LINKS, still checks every file against the lock; a failing cause is a fake python3 where the cause is
what is tested."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, Env

DEBIAN_NO_ENSUREPIP = """The virtual environment was not created successfully because ensurepip is not
available.  On Debian/Ubuntu systems, you need to install the python3-venv
package using the following command.

    apt install python3.11-venv

You may need to use sudo with that command.  After installing the python3-venv
package, recreate your virtual environment."""


def fake_python(folder: Path, body: str) -> Path:
    """A `python3` first on PATH that behaves as `body` says, else runs the real interpreter."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "python3"
    script.write_text(f"#!/bin/sh\n{body}\nexec {sys.executable} \"$@\"\n")
    script.chmod(0o755)
    return script


def isolated_path(fake: Path) -> str:
    """PATH with the fake python first and no other python3 (so setup.sh must use the fake)."""
    keep = [fake.parent]
    tools = fake.parent.parent / "tools"
    tools.mkdir(exist_ok=True)
    for tool in ("bash", "sh", "dirname", "env", "cat", "rm", "mkdir", "git"):
        found = shutil.which(tool)
        if found and not (tools / tool).exists():
            (tools / tool).symlink_to(found)
    keep.append(tools)
    return os.pathsep.join(str(p) for p in keep)


def test_a_package_file_that_does_not_match_the_lock_is_refused(
    env: Env, tokens: dict[str, str], wheelhouse: dict[str, str]
) -> None:
    lock = env.project / "requirements.lock"
    dotenv_block = re.compile(r"^python-dotenv==.*\n(?:    --hash=sha256:[0-9a-f]{64}.*\n)+", re.MULTILINE)
    lock.write_text(dotenv_block.sub(lambda m: re.sub("[0-9a-f]{64}", "0" * 64, m.group(0)), lock.read_text()))
    assert "0" * 64 in lock.read_text()
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"], **wheelhouse}, drop=("PYTHON",), timeout=600)
    assert r.code == 8
    assert "DO NOT MATCH THE HASHES" in r.err  # pip's own words are shown
    assert "not the one the lock names" in r.err
    assert not (env.project / ".venv" / ".lock.sha256").exists()


def setup_command(env: Env, *args: str, extra: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """argv and environment of `bash setup.sh ARGS` as Env.run builds them, PYTHON unset (for Popen)."""
    environ = env.base_environ()
    environ.update(extra)
    environ.pop("PYTHON", None)
    return ["bash", str(env.project / "setup.sh"), *args, "--local-dir", str(env.out_dir)], environ


def test_three_first_runs_at_once_all_succeed_one_builds_and_a_rerun_reuses_it(
    env: Env, tokens: dict[str, str], wheelhouse: dict[str, str]
) -> None:
    argv, environ = setup_command(env, "--check", extra={"HF_TOKEN": tokens["accepted_read"], **wheelhouse})
    runs = [
        subprocess.Popen(argv, cwd=env.project, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    results: list[tuple[int, str]] = []
    for run in runs:
        _, raw = run.communicate(timeout=600)
        results.append((run.returncode, raw.decode(errors="replace")))
    errs = [err for _, err in results]
    for code, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    assert sum("python: building" in err for err in errs) == 1, errs
    assert (env.project / ".venv" / "bin" / "python").is_file()
    again = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"], **wheelhouse}, drop=("PYTHON",))
    assert again.code == 0, again.err
    assert "python: building" not in again.err  # built once, reused while requirements.lock is unchanged
    assert "HF_TOKEN from the environment" in again.err


def winner_venv(project: Path) -> None:
    """What a run that got the lock leaves: .venv with the packages (here: this test run's, through a .pth
    file) and the hash of the requirements.lock it was built from."""
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (venv / ".lock.sha256").write_text(hashlib.sha256((project / "requirements.lock").read_bytes()).hexdigest())


def test_a_run_that_waited_for_the_lock_uses_the_venv_the_other_built(env: Env, tokens: dict[str, str]) -> None:
    argv, environ = setup_command(env, "--check", extra={"HF_TOKEN": tokens["accepted_read"]})
    with open(env.project / ".venv.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run = subprocess.Popen(argv, cwd=env.project, env=environ, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert run.stderr is not None
        first = run.stderr.readline().decode()  # setup.sh's own wait is bounded: this returns
        assert "python: another setup.sh is building" in first and "waiting" in first
        winner_venv(env.project)
    _, rest = run.communicate(timeout=120)
    err = first + rest.decode(errors="replace")
    assert run.returncode == 0, err
    assert "python: building" not in err


def test_waiting_for_another_build_is_bounded_and_says_so(env: Env) -> None:
    with open(env.project / ".venv.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = env.run("--check", env={"GATEDFETCH_VENV_WAIT": "1"}, drop=("PYTHON",))
    assert r.code == 1
    assert "another setup.sh is building" in r.err
    assert "gave up" in r.err and "run bash setup.sh again" in r.err
    assert not (env.project / ".venv").exists()


def test_missing_lock_file_is_named(env: Env) -> None:
    (env.project / "requirements.lock").unlink()
    r = env.run("--check", drop=("PYTHON",))
    assert r.code == 1
    assert "requirements.lock is missing" in r.err and "bash scripts/lock.sh" in r.err
    assert "Traceback" not in r.err


def venv_fails_with(tmp_path: Path, message: str) -> Path:
    """A fake python3 whose `-m venv DIR` prints `message` on stderr and exits 1, as the real one does."""
    said = tmp_path / "venv-says.txt"
    said.write_text(message + "\n")
    return fake_python(tmp_path / "bin", f'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then cat "{said}" >&2; exit 1; fi')


def test_venv_in_a_folder_that_is_not_writable_names_the_folder_and_the_fix(env: Env, tmp_path: Path) -> None:
    venv = env.project / ".venv"
    fake = venv_fails_with(tmp_path, f"Error: [Errno 13] Permission denied: '{venv}'")
    r = env.run("--check", env={"PATH": isolated_path(fake)}, drop=("PYTHON",))
    assert r.code == 9
    assert f"Permission denied: '{venv}'" in r.err  # the venv module's own words are shown
    assert f"{env.project} is not writable" in r.err and "chown" in r.err and "clone the project" in r.err
    assert "venv module" not in r.err and "apt-get" not in r.err
    assert "Traceback" not in r.err


def test_venv_on_a_full_disk_says_no_space(env: Env, tmp_path: Path) -> None:
    fake = venv_fails_with(tmp_path, "Error: [Errno 28] No space left on device: 'python3'")
    r = env.run("--check", env={"PATH": isolated_path(fake)}, drop=("PYTHON",))
    assert r.code == 9
    assert "No space left on device" in r.err
    assert "no space left" in r.err and "free some space" in r.err
    assert "venv module" not in r.err and "apt-get" not in r.err


def test_missing_ensurepip_names_the_apt_package(env: Env, tmp_path: Path) -> None:
    fake = venv_fails_with(tmp_path, DEBIAN_NO_ENSUREPIP)
    r = env.run("--check", env={"PATH": isolated_path(fake)}, drop=("PYTHON",))
    assert r.code == 1
    assert "ensurepip is not" in r.err  # the venv module's own words are shown
    assert "the venv module (with ensurepip) is missing" in r.err and "sudo apt-get install python3." in r.err
    assert "not writable" not in r.err
    assert "Traceback" not in r.err


def test_missing_venv_module_names_the_package(env: Env, tmp_path: Path) -> None:
    # Silent failure; the probe `import ensurepip, venv` fails as it does on a Python built without them.
    fake = fake_python(
        tmp_path / "bin",
        'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then exit 1; fi\ncase "$*" in *"import ensurepip"*) exit 1;; esac',
    )
    r = env.run("--check", env={"PATH": isolated_path(fake)}, drop=("PYTHON",))
    assert r.code == 1
    assert "venv" in r.err and "apt-get install python3." in r.err
    assert "Traceback" not in r.err


def test_venv_failing_for_another_reason_shows_its_message_without_guessing(env: Env, tmp_path: Path) -> None:
    fake = venv_fails_with(tmp_path, "Error: something unforeseen")
    r = env.run("--check", env={"PATH": isolated_path(fake)}, drop=("PYTHON",))
    assert r.code == 1
    assert "Error: something unforeseen" in r.err and "its message is above" in r.err
    assert "is missing" not in r.err and "not writable" not in r.err


def test_too_old_python_is_named(env: Env, tmp_path: Path) -> None:
    fake = fake_python(tmp_path / "bin", "case \"$*\" in *version_info*) exit 1;; esac")
    r = env.run("--check", env={"PATH": isolated_path(fake)}, drop=("PYTHON",))
    assert r.code == 1
    assert "Python >= 3.10" in r.err and "apt-get install" in r.err


def test_python_variable_without_dependencies_is_named(env: Env, tmp_path: Path) -> None:
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    r = env.run("--check", env={"PYTHON": str(venv / "bin" / "python")})
    assert r.code == 2  # PYTHON names an interpreter that cannot run the helper: a usage error
    assert "lacks huggingface_hub" in r.err and "requirements.txt" in r.err


def test_help_works_before_any_venv_exists(env: Env) -> None:
    r = env.run("--help", drop=("PYTHON",), local_dir=False)
    assert r.code == 0 and "--token-stdin" in r.out
    assert not (env.project / ".venv").exists()


def lock_project(dest: Path) -> Path:
    """The files scripts/lock.sh --check reads, copied."""
    names = ("scripts/lock.sh", "scripts/common.sh", "requirements.txt", "requirements-dev.txt",
             "requirements-exclude.txt", "requirements.lock", "requirements-dev.lock")
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, dest / name)
    return dest


def lock_check(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(project / "scripts" / "lock.sh"), "--check"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.e2e  # runs scripts/lock.sh
def test_the_committed_locks_match_the_requirements_files(tmp_path: Path) -> None:
    r = lock_check(lock_project(tmp_path))
    assert r.returncode == 0, r.stderr


@pytest.mark.e2e  # runs scripts/lock.sh
@pytest.mark.parametrize(
    ("edited", "stale"),
    [
        ("requirements.txt", ("requirements.lock", "requirements-dev.lock")),
        ("requirements-dev.txt", ("requirements-dev.lock",)),
        ("requirements-exclude.txt", ("requirements.lock", "requirements-dev.lock")),
    ],
)
def test_requirements_edited_without_refreshing_the_lock_fail_the_check(
    tmp_path: Path, edited: str, stale: tuple[str, ...]
) -> None:
    project = lock_project(tmp_path)
    with open(project / edited, "a") as f:
        f.write("rich>=13\n")
    r = lock_check(project)
    assert r.returncode == 1
    for lock in stale:
        assert f"{lock} is out of date: {edited} changed" in r.stderr
    assert "fix: bash scripts/lock.sh" in r.stderr
    if edited == "requirements-dev.txt":
        assert "requirements.lock is out of date" not in r.stderr


def fake_uv(folder: Path, said: str) -> Path:
    """A `uv` on PATH that writes its argv, one argument a line, beside itself, says `said` and fails."""
    folder.mkdir(parents=True, exist_ok=True)
    uv = folder / "uv"
    uv.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{folder}/uv.argv"\necho "{said}" >&2\nexit 2\n')
    uv.chmod(0o755)
    return uv


def test_uv_on_path_installs_the_lock_into_a_venv_made_without_pip(env: Env, tmp_path: Path) -> None:
    uv = fake_uv(tmp_path / "uvbin", "error: Failed to fetch: `https://pypi.org/simple/anyio/`")
    r = env.run("--check", env={"PATH": f"{uv.parent}:{os.environ['PATH']}"}, drop=("PYTHON",), timeout=120)
    argv = (uv.parent / "uv.argv").read_text().splitlines()
    venv = env.project / ".venv"
    assert argv[:3] == ["pip", "install", "--quiet"]
    assert argv[argv.index("--python") + 1] == str(venv / "bin" / "python")
    assert {"--require-hashes", "--no-deps"} <= set(argv)
    assert argv[-2:] == ["-r", str(env.project / "requirements.lock")]
    assert (venv / "pyvenv.cfg").is_file() and not (venv / "bin" / "pip").exists()  # ensurepip did not run
    assert "with " in r.err and " and uv (once" in r.err
    assert r.code == 7 and "uv pip install -r requirements.lock failed" in r.err and "Failed to fetch" in r.err
    assert not (venv / ".lock.sha256").exists()


def test_a_hash_mismatch_reported_by_uv_is_exit_8(env: Env, tmp_path: Path) -> None:
    uv = fake_uv(tmp_path / "uvbin", "error: Hash mismatch for `python-dotenv==1.2.4`")
    r = env.run("--check", env={"PATH": f"{uv.parent}:{os.environ['PATH']}"}, drop=("PYTHON",), timeout=120)
    assert r.code == 8, r.err
    assert "not the one the lock names" in r.err


def test_an_unknown_installer_is_a_usage_error_naming_the_choices(env: Env) -> None:
    r = env.run("--check", env={"GATEDFETCH_INSTALLER": "conda"}, drop=("PYTHON",))
    assert r.code == 2
    assert "GATEDFETCH_INSTALLER=conda is none of uv, pip, ensurepip" in r.err and "fix: " in r.err
    assert "Traceback" not in r.err


def test_the_helper_is_told_when_setup_sh_started(env: Env, tmp_path: Path) -> None:
    said = tmp_path / "started.txt"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nprintf "%s" "$GATEDFETCH_STARTED" > "{said}"\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    before = time.time()
    env.run("--help", env={"PYTHON": str(python)}, local_dir=False)
    started = float(said.read_text())
    assert before - 0.01 <= started <= time.time()
