"""Fixtures: a local test Hub, a fresh copy of the project and a fresh HOME per test, and a runner
that calls `bash setup.sh` as a user would (subprocess, no TTY, real huggingface_hub client)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatedfetch import settings
from gatedfetch.localhub import TOKENS, default_world
from gatedfetch.transfer import RemoteFile
from tests.jobs_hub import TestHub

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "fishaudio/openaudio-s1-mini"
PROJECT_FILES = (
    "setup.sh",
    "scripts/common.sh",
    "scripts/bootstrap.py",
    "auth_helper.py",
    "requirements.txt",
    "requirements.lock",
    ".env.example",
    "gatedfetch",
)

# Every wait the product makes, shortened (gatedfetch.settings): no test waits on the wall clock for a backoff
# or a Retry-After. The "still waiting" lines and the timeouts keep their defaults unless a test shortens them.
FAST = settings.Settings(
    hub_backoff=0.01, hub_pause_cap=0.1, backoff_base=0.01, backoff_cap=0.05, retry_after_cap=0.1
)


def settings_environ(chosen: settings.Settings) -> dict[str, str]:
    """The environment that gives a `bash setup.sh` run `chosen` (only what differs from the defaults)."""
    default = settings.Settings()
    return {
        settings.ENVIRONMENT[name]: repr(value)
        for name, value in vars(chosen).items()
        if value != getattr(default, name)
    }


@pytest.fixture(autouse=True)
def fast_waits() -> Iterator[settings.Settings]:
    """In this process too, the shortened waits; a test may `settings.use` others."""
    settings.use(FAST)
    yield FAST
    settings.use(None)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self) -> dict[str, Any]:
        doc = json.loads(self.out)
        assert isinstance(doc, dict)
        return doc


HUB_BIG_SIZE = 3 * 1024 * 1024
_BIG_DATA: dict[int, Path] = {}  # the hub's files for other sizes of model.pth, per worker


@pytest.fixture(scope="session")
def hub_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hubdata")


@pytest.fixture
def hub(hub_data: Path, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestHub]:
    """The local hub, its model.pth 3 MiB, or HUB_BIG_SIZE bytes where the test module names that size (its files
    are written once per size and worker)."""
    size = getattr(request.module, "HUB_BIG_SIZE", HUB_BIG_SIZE)
    data = hub_data if size == HUB_BIG_SIZE else _BIG_DATA.get(size)
    if data is None:
        data = _BIG_DATA[size] = tmp_path_factory.mktemp(f"hubdata-{size}")
    with TestHub(default_world(data_dir=data, big_size=size)) as h:
        yield h


def model_remote(hub: TestHub) -> RemoteFile:
    """model.pth as the transfer is given it: its /resolve URL at the hub's commit, its sha256."""
    spec = hub.repo(MODEL).files()["model.pth"]
    url = f"{hub.url}/{MODEL}/resolve/{hub.repo(MODEL).commit()}/model.pth"
    return RemoteFile("model.pth", spec.size, url, spec.sha256, None)


def pieces_held_at_each_take(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets, each time a stream asks a file for a piece, how many of its pieces streams then hold."""
    from gatedfetch.transfer.job import Job

    seen: list[int] = []
    take = Job.take

    def watch(self: Job) -> object:
        piece = take(self)
        seen.append(len(self.inflight))
        return piece

    monkeypatch.setattr(Job, "take", watch)
    return seen


def model_bytes(hub: TestHub) -> bytes:
    return hub.repo(MODEL).files()["model.pth"].data_path.read_bytes()


def copy_project(dest: Path) -> Path:
    for name in PROJECT_FILES:
        src = REPO_ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, target)
    return dest


@dataclass
class Env:
    project: Path
    home: Path
    hub: TestHub
    out_dir: Path

    @property
    def token_file(self) -> Path:
        return self.home / ".cache" / "huggingface" / "token"

    def store_login(self, token: str) -> Path:
        self.token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.token_file.write_text(token)
        self.token_file.chmod(0o600)
        return self.token_file

    def write_env(self, text: str, name: str = ".env") -> Path:
        path = self.project / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    def base_environ(self) -> dict[str, str]:
        keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT") if k in os.environ}
        keep.update(
            HOME=str(self.home),
            HF_ENDPOINT=self.hub.url,
            PYTHON=sys.executable,
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_XET="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        keep.update(settings_environ(FAST))
        return keep

    def start(
        self, *args: str, env: dict[str, str] | None = None, output: int = subprocess.DEVNULL
    ) -> subprocess.Popen[bytes]:
        """`bash setup.sh --local-dir OUT ARGS` started, not waited for, in its own session (so a test can kill
        the whole group); `output`: where its stdout and stderr go (DEVNULL, or PIPE to read them)."""
        environ = self.base_environ()
        environ.update(env or {})
        return subprocess.Popen(
            ["bash", str(self.project / "setup.sh"), "--local-dir", str(self.out_dir), *args],
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        local_dir: bool = True,
        timeout: float = 120,
        drop: tuple[str, ...] = (),
    ) -> Result:
        environ = self.base_environ()
        environ.update(env or {})
        for k in drop:
            environ.pop(k, None)
        argv = ["bash", str(self.project / "setup.sh"), *args]
        if local_dir and "--local-dir" not in args:
            argv += ["--local-dir", str(self.out_dir)]
        proc = subprocess.run(
            argv,
            cwd=self.project,
            env=environ,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The files requirements.lock names, downloaded once (checked against its hashes), and the environment that
    makes pip install from them and nowhere else."""
    if os.environ.get("GATEDFETCH_OFFLINE_TESTS") == "1":
        pytest.skip("needs the package index")
    folder = tmp_path_factory.mktemp("wheelhouse")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--no-deps",
         "--require-hashes", "-r", str(REPO_ROOT / "requirements.lock"), "-d", str(folder)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(folder), "PIP_NO_COMPILE": "1"}


@pytest.fixture
def env(tmp_path: Path, hub: TestHub) -> Env:
    project = copy_project(tmp_path / "project")
    home = tmp_path / "home"
    home.mkdir()
    return Env(project=project, home=home, hub=hub, out_dir=tmp_path / "out")


@pytest.fixture
def tokens() -> dict[str, str]:
    return dict(TOKENS)


class Main:
    """`auth_helper.py ARGS` in this process (the fast tier): `gatedfetch.cli.main` with the local hub as the
    endpoint, a fresh HOME and no token in the environment; what it printed is captured at the descriptors, as a
    user would read it."""

    def __init__(self, hub: TestHub, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                 home: Path) -> None:
        from huggingface_hub import constants

        self.hub, self.capfd, self.home = hub, capfd, home
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setenv("HOME", str(home))
        for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME", "HF_TOKEN_PATH"):
            monkeypatch.delenv(var, raising=False)

    def __call__(self, *args: str) -> Result:
        from gatedfetch import cli

        self.capfd.readouterr()
        code = cli.main(list(args))
        out, err = self.capfd.readouterr()
        return Result(code, out, err)

    def hub_calls(self) -> list[str]:
        return [q.path for q in self.hub.requests if q.server == "hub"]


@pytest.fixture
def main(hub: TestHub, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Main:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    return Main(hub, capfd, monkeypatch, home)


def hub_content(hub: TestHub, revision: str = "main") -> dict[str, bytes]:
    return {p: f.data_path.read_bytes() for p, f in hub.repo(MODEL).files(revision).items()}


class Clock:
    """A clock the test moves by hand (`clock.now += 5`): for the bounds that take an injected clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def assert_no_secret(secret: str, *texts: str) -> None:
    """The whole token and any 10 consecutive characters of it are absent."""
    for text in texts:
        assert secret not in text
        for i in range(len(secret) - 9):
            assert secret[i : i + 10] not in text, f"a 10-character piece of the token leaked: {secret[i:i + 10]!r}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tiers: a test that runs `bash setup.sh` (it takes the `env` fixture, or `big_env`) is end-to-end (`e2e`),
    as is one marked so because it runs another program; the rest is the fast tier (`bash scripts/test.sh --fast`)."""
    for item in items:
        if {"env", "big_env"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
