"""setup.sh's own job: find a Python, build .venv from requirements.txt once, name the fix when it can't."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Env


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


@pytest.mark.skipif(os.environ.get("GATEDFETCH_OFFLINE_TESTS") == "1", reason="needs the package index")
def test_venv_is_built_once_and_reused(env: Env, tokens: dict[str, str]) -> None:
    first = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]}, drop=("PYTHON",), timeout=600)
    assert first.code == 0, first.err
    assert "python: building" in first.err
    assert (env.project / ".venv" / "bin" / "python").is_file()
    again = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]}, drop=("PYTHON",))
    assert again.code == 0, again.err
    assert "python: building" not in again.err


def test_missing_venv_module_names_the_package(env: Env, tmp_path: Path) -> None:
    fake = fake_python(tmp_path / "bin", 'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then exit 1; fi')
    r = env.run("--check", env={"PATH": isolated_path(fake)}, drop=("PYTHON",))
    assert r.code == 1
    assert "venv" in r.err and "apt-get install python3." in r.err
    assert "Traceback" not in r.err


def test_too_old_python_is_named(env: Env, tmp_path: Path) -> None:
    fake = fake_python(tmp_path / "bin", "case \"$*\" in *version_info*) exit 1;; esac")
    r = env.run("--check", env={"PATH": isolated_path(fake)}, drop=("PYTHON",))
    assert r.code == 1
    assert "Python >= 3.10" in r.err and "apt-get install" in r.err


def test_python_variable_without_dependencies_is_named(env: Env, tmp_path: Path) -> None:
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    r = env.run("--check", env={"PYTHON": str(venv / "bin" / "python")})
    assert r.code == 1
    assert "lacks huggingface_hub" in r.err and "requirements.txt" in r.err


def test_help_works_before_any_venv_exists(env: Env) -> None:
    r = env.run("--help", drop=("PYTHON",), local_dir=False)
    assert r.code == 0 and "--token-stdin" in r.out
    assert not (env.project / ".venv").exists()
