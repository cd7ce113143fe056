"""The .venv a user's first `bash setup.sh` builds (no token yet): the commands the README and AUTH.md give run
from it, the helper's every module imports in it, and what requirements-exclude.txt leaves out is not there.
One build for the whole module: the tests read it and change nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import copy_project

pytestmark = [
    pytest.mark.e2e,  # a real `bash setup.sh` builds the venv
    pytest.mark.skipif(os.environ.get("GATEDFETCH_OFFLINE_TESTS") == "1", reason="needs the package index"),
]


COMPILED: dict[str, bool] = {}  # what the build left compiled, read right after it


def user_environ(home: Path) -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TMPDIR") if k in os.environ}
    return {**keep, "HOME": str(home), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("user-venv")
    home = base / "home"
    home.mkdir()
    project = copy_project(base / "project")
    # as many container images have it: the build still leaves what the helper imports compiled
    environ = {**user_environ(home), "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run(["bash", str(project / "setup.sh"), "--check"], cwd=project, env=environ,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert r.returncode == 3, r.stderr  # no token: after the build, the helper names where to put one
    assert "python: building" in r.stderr and "HF_TOKEN" in r.stderr
    site = next((project / ".venv" / "lib").glob("python3.*/site-packages"))
    # read now, before the tests below run commands that would compile them anyway
    COMPILED.update(hf_api=bool(list((site / "huggingface_hub" / "__pycache__").glob("hf_api.*.pyc"))),
                    flow=bool(list((project / "gatedfetch" / "__pycache__").glob("flow.*.pyc"))))
    return project


@pytest.mark.parametrize(
    "command",
    [
        ["bin/hf", "--help"],
        ["bin/hf", "auth", "login", "--help"],
        ["bin/hf", "download", "--help"],
        ["bin/python", "-c", "import huggingface_hub, dotenv"],
    ],
    ids=lambda c: " ".join(c),
)
def test_a_documented_command_runs_from_the_venv(project: Path, command: list[str]) -> None:
    r = subprocess.run([str(project / ".venv" / command[0]), *command[1:]], cwd=project,
                       env=user_environ(project.parent / "home"), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_every_module_of_the_helper_imports_in_the_venv(project: Path) -> None:
    script = (
        "import importlib, pkgutil, gatedfetch\n"
        "for m in pkgutil.walk_packages(gatedfetch.__path__, 'gatedfetch.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('imported')\n"
    )
    r = subprocess.run([str(project / ".venv" / "bin" / "python"), "-c", script], cwd=project,
                       env=user_environ(project.parent / "home"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "imported" in r.stdout, r.stderr


@pytest.mark.parametrize("module", ["hf_xet", "fsspec"])
def test_what_the_venv_does_not_need_is_not_in_it(project: Path, module: str) -> None:
    r = subprocess.run([str(project / ".venv" / "bin" / "python"), "-c", f"import {module}"], cwd=project,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"No module named '{module}'" in r.stderr


def test_what_the_helper_imports_is_compiled_once_whatever_pythondontwritebytecode_says(project: Path) -> None:
    assert COMPILED == {"hf_api": True, "flow": True}
