"""A machine's first boot and its later lives: --prepare with a token from every source, HF_HUB_OFFLINE=1 on
the copy asked for, a download resumed in a restarted container (a new host name), and no request or file the
job does not need (huggingface_hub's own lookups)."""

from __future__ import annotations

import io
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatedfetch import flow, manifest, options
from gatedfetch.report import Reporter
from gatedfetch.store import hosts
from tests.conftest import MODEL, Env, hub_content

# --- --prepare: a token from any source the full setup reads gives the full setup ------------------------------


def _assert_full_setup(env: Env, code: int, err: str) -> None:
    assert code == 0, err
    assert "prepare: a token is available: continuing with the full setup" in err
    assert "ready:" in err and "no token on this machine yet" not in err
    for path, data in hub_content(env.hub).items():
        assert (env.out_dir / path).read_bytes() == data
    assert manifest.load(env.out_dir) is not None


@pytest.mark.parametrize("variable", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
def test_prepare_with_a_token_in_the_environment_sets_the_model_up(
    env: Env, tokens: dict[str, str], variable: str
) -> None:
    # setup.sh pipes the variable's token and takes it out of the helper's environment: --prepare must read the pipe.
    r = env.run("--prepare", env={variable: tokens["accepted_read"]})
    _assert_full_setup(env, r.code, r.err)
    assert f"token: {variable} from the environment" in r.err


@pytest.mark.parametrize("source", ["dotenv", "stored", "stdin"])
def test_prepare_with_a_token_from_a_file_or_stdin_sets_the_model_up(
    env: Env, tokens: dict[str, str], source: str
) -> None:
    token, args, stdin = tokens["accepted_read"], ["--prepare"], None
    if source == "dotenv":
        env.write_env(f"HF_TOKEN={token}\n")
    elif source == "stored":
        env.store_login(token)
    else:
        args.append("--token-stdin")
        stdin = token.encode()
    r = env.run(*args, stdin=stdin)
    _assert_full_setup(env, r.code, r.err)


def test_prepare_without_any_token_still_stops_at_the_next_steps(env: Env) -> None:
    r = env.run("--prepare")
    assert r.code == 0, r.err
    assert "prepare: no token on this machine yet" in r.err
    assert not env.out_dir.exists()


# --- HF_HUB_OFFLINE=1 checks the copy asked for ---------------------------------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A complete, recorded copy of MODEL@v1.0 (commit abc…) made by hand, as a finished run leaves it."""
    folder = tmp_path / "copy"
    folder.mkdir()
    entries = []
    for name, data in (("model.pth", b"weights" * 1000), ("config.json", b"{}")):
        (folder / name).write_bytes(data)
        entry = manifest.FileEntry(name, len(data), manifest.sha256_of(folder / name), True)
        entries.append(manifest.stamp(folder, entry))
    manifest.save(folder, manifest.Manifest(MODEL, "v1.0", "abc1234" + "0" * 33, "https://huggingface.co", "", entries))
    return folder


def _offline(folder: Path, *args: str) -> tuple[int, str]:
    err = io.StringIO()
    rep = Reporter(err=err)
    out = flow.offline(options.parse(["--local-dir", str(folder), *args]), rep, "https://huggingface.co")
    rep.finish(out)
    return out.exit_code, err.getvalue()


@pytest.mark.parametrize(
    ("args", "asked"),
    [
        (["--model", "someone/other-model", "--revision", "v1.0"], "someone/other-model@v1.0"),
        ([], f"{MODEL}@main"),
        (["--revision", "v2.0"], f"{MODEL}@v2.0"),
    ],
)
def test_offline_refuses_a_copy_of_another_model_or_revision(copy: Path, args: list[str], asked: str) -> None:
    code, err = _offline(copy, *args)
    assert code == 7, err
    assert f"holds {MODEL}@v1.0, not {asked}" in err


@pytest.mark.parametrize("revision", ["v1.0", "abc1234" + "0" * 33, "abc1234"])
def test_offline_accepts_the_copy_by_its_revision_or_commit(copy: Path, revision: str) -> None:
    code, err = _offline(copy, "--revision", revision)
    assert code == 0, err
    assert "is complete" in err


def test_offline_keeps_a_file_whose_time_stamp_moved_when_its_bytes_are_right(copy: Path) -> None:
    before = (copy / "model.pth").stat().st_mtime_ns
    os.utime(copy / "model.pth", ns=(before + 10**9, before + 10**9))  # `touch`, `cp -r`, `tar` without times
    code, err = _offline(copy, "--revision", "v1.0")
    assert code == 0, err
    assert "1 file(s) whose time stamp changed still hold the recorded bytes" in err
    m = manifest.load(copy)
    assert m is not None and m.files[0].mtime_ns == before + 10**9  # re-stamped: the next check is instant again


def test_offline_refuses_a_file_of_the_right_size_with_other_bytes(copy: Path) -> None:
    data = bytearray((copy / "model.pth").read_bytes())
    data[100] ^= 1
    (copy / "model.pth").write_bytes(bytes(data))
    code, err = _offline(copy, "--revision", "v1.0")
    assert code == 7, err
    assert "not complete (model.pth)" in err


# --- a restarted container (a new host name) resumes the partial on the same disk -------------------------------


def _fill(part: Path, size: int, have: int) -> None:
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"x" * have)


@pytest.mark.parametrize(("fs", "adopted"), [(0xEF53, True), (0x794C7630, True), (0x6969, False), (None, False)])
def test_another_hosts_partial_is_adopted_only_where_locks_span_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fs: int | None, adopted: bool
) -> None:
    work, key, size = tmp_path / ".gatedfetch", "a" * 64, 1000
    monkeypatch.setattr(hosts, "fs_type", lambda folder: fs)
    monkeypatch.setattr(hosts, "host_tag", lambda: "new-box")
    old_a = work / "partial" / f"{key}.old-box-1.part"
    old_b = work / "partial" / f"{key}.old-box-2.part"
    _fill(old_a, size, 300)
    _fill(old_b, size, 600)
    hosts.adopt(work, key, size)
    own = hosts.partial_path(work, key)
    if adopted:
        assert own.stat().st_size == 600  # the fullest one
        assert not old_a.exists() and not old_b.exists()  # the other goes: nothing would ever remove it
        assert hosts.bytes_on_disk(work, key, size) == 600
    else:  # NFS, or a file system we cannot tell: each host keeps its own
        assert not own.exists() and old_a.exists() and old_b.exists()
        assert hosts.bytes_on_disk(work, key, size) == 0


HOSTNAME_SITE = """
import os, socket
if os.environ.get("FAKE_HOSTNAME"):
    socket.gethostname = lambda: os.environ["FAKE_HOSTNAME"]
"""


def test_a_download_killed_in_one_container_resumes_in_the_next(
    env: Env, tokens: dict[str, str], tmp_path: Path
) -> None:
    big = env.hub.repo(MODEL).files()["model.pth"]
    work = env.out_dir / ".gatedfetch"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HOSTNAME_SITE)

    def container(name: str) -> dict[str, str]:
        return {"PYTHONPATH": str(site), "FAKE_HOSTNAME": name, "HF_TOKEN": tokens["accepted_read"]}

    env.hub.settings.throttle_bps = 1_000_000
    proc = env.start("--connections", "1", env=container("box-1"))
    first = work / "partial" / f"{big.sha256}.box-1.part"
    deadline = time.monotonic() + 60
    while hosts.bytes_on_disk(work, big.sha256, big.size) < big.size // 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists()  # the kill struck mid-file, in the first container
    have = hosts.bytes_on_disk(work, big.sha256, big.size)
    assert big.size // 3 <= have < big.size

    env.hub.settings.throttle_bps = None
    env.hub.clear_requests()
    r = env.run("--json", env=container("box-2"))
    assert r.code == 0, r.err
    assert (env.out_dir / "model.pth").read_bytes() == hub_content(env.hub)["model.pth"]
    assert {f["path"]: f for f in r.json()["files"]}["model.pth"]["resumed_from"] == have
    assert 0 < env.hub.bytes_sent(big.sha256) <= 1.05 * (big.size - have)
    assert list((work / "partial").iterdir()) == []  # no orphan partial of either container


# --- no request and no file the job does not need ---------------------------------------------------------------


def _files_under(*folders: Path) -> set[Path]:
    return {p for folder in folders if folder.exists() for p in folder.rglob("*")}


def _on_a_terminal(argv: list[str], environ: dict[str, str]) -> int:
    """Run `argv` with a pseudo-terminal as its stdin, stdout and stderr; its exit code."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen(argv, env=environ, stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    while True:  # drain the terminal, or a chatty run would block on it
        try:
            if not os.read(main, 65536):
                break
        except OSError:  # EIO: every writer closed the terminal
            break
    os.close(main)
    return proc.wait(timeout=120)


@pytest.mark.parametrize("terminal", [False, True])
def test_a_rerun_makes_one_request_and_check_writes_nothing_with_a_fresh_home(
    env: Env, tokens: dict[str, str], tmp_path: Path, terminal: bool
) -> None:
    token = {"HF_TOKEN": tokens["accepted_read"]}
    assert env.run(env=token).code == 0
    # huggingface_hub's telemetry settings as a user has them (the fixtures turn telemetry off): not set.
    fresh = tmp_path / "fresh-home"
    fresh.mkdir()
    environ = env.base_environ()
    environ.pop("HF_HUB_DISABLE_TELEMETRY")
    environ.update(token, HOME=str(fresh))
    for args in (["--local-dir", str(env.out_dir)], ["--local-dir", str(env.out_dir), "--check"]):
        env.hub.clear_requests()
        before = _files_under(fresh, env.out_dir)
        argv = ["bash", str(env.project / "setup.sh"), *args]
        if terminal:
            code = _on_a_terminal(argv, environ)
        else:
            code = subprocess.run(argv, env=environ, stdin=subprocess.DEVNULL, capture_output=True).returncode
        assert code == 0
        paths = [q.path for q in env.hub.requests]
        assert not any("agent-harnesses" in p for p in paths), paths
        if "--check" in args:
            assert _files_under(fresh, env.out_dir) == before  # --check writes nothing, HOME included
        else:
            assert len(paths) == 1, paths  # the re-run: one request
    assert not (fresh / ".cache" / "huggingface" / ".agent_harnesses.json").exists()


def test_huggingface_hub_left_alone_asks_for_the_agent_registry_and_caches_it(env: Env, tmp_path: Path) -> None:
    """The fault the test above guards against strikes here: huggingface_hub as it comes asks the hub for its
    agent registry and writes it into a fresh HF_HOME."""
    home = tmp_path / "plain-home"
    environ = env.base_environ()
    environ.pop("HF_HUB_DISABLE_TELEMETRY")
    environ.update(HOME=str(home))
    code = f"from huggingface_hub import HfApi; HfApi(endpoint={env.hub.url!r}).model_info({MODEL!r})"
    subprocess.run([sys.executable, "-c", code], env=environ, check=True, capture_output=True)
    assert any("agent-harnesses" in q.path for q in env.hub.requests)
    assert (home / ".cache" / "huggingface" / ".agent_harnesses.json").exists()


def test_a_corrupt_manifest_beside_a_complete_copy_costs_a_warning_not_a_download(
    env: Env, tokens: dict[str, str]
) -> None:
    token = {"HF_TOKEN": tokens["accepted_read"]}
    assert env.run(env=token).code == 0
    path = manifest.path_of(env.out_dir)
    path.write_text('{"version": 1, "files": [')  # cut short, as by a full disk or a crash mid-write
    env.hub.clear_requests()
    r = env.run("--json", env=token)
    assert r.code == 0, r.err
    assert r.err.count(f"{path} cannot be read") == 1
    assert env.hub.bytes_sent() == 0  # every file verified in place, none fetched
    assert {f["source"] for f in r.json()["files"]} == {"in-place"}
    assert manifest.load(env.out_dir) is not None  # a new manifest
