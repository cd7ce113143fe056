"""The transfer as a user meets it through `bash setup.sh`: kill and resume, concurrent runs, retries,
faults, disk space, progress lines."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

from gatedfetch.store import bytes_on_disk
from tests.conftest import MODEL, Env, hub_content


def partial_size(out: Path, sha256: str, size: int) -> int:
    """The bytes a re-run may keep: those the piece record vouches for (a kill can land between a write
    and its record, and then the file holds more than the record; the record is the truth)."""
    return bytes_on_disk(out / ".gatedfetch", sha256, size)


def test_killed_run_resumes_from_the_bytes_on_disk(env: Env, tokens: dict[str, str]) -> None:
    big = env.hub.repo(MODEL).files()["model.pth"]
    env.hub.settings.throttle_bps = 1_000_000
    proc = env.start(env={"HF_TOKEN": tokens["accepted_read"]}, output=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while partial_size(env.out_dir, big.sha256, big.size) < big.size // 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    have = partial_size(env.out_dir, big.sha256, big.size)
    assert big.size // 3 <= have < big.size
    env.hub.settings.throttle_bps = None
    env.hub.clear_requests()
    r = env.run("--json", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert (env.out_dir / "model.pth").read_bytes() == hub_content(env.hub)["model.pth"]
    gets = [q for q in env.hub.requests if q.server == "cdn" and q.method == "GET" and big.sha256 in q.path]
    assert gets and gets[0].headers.get("range") == f"bytes={have}-"
    sent = sum(q.bytes_sent for q in gets)
    assert sent <= 1.05 * (big.size - have)
    doc = {f["path"]: f for f in r.json()["files"]}
    assert doc["model.pth"]["resumed_from"] == have
    assert "model.pth: resumed from" in r.err
    assert list((env.out_dir / ".gatedfetch" / "partial").glob("*.part")) == []


def test_server_ignoring_range_still_gives_a_good_file(env: Env, tokens: dict[str, str]) -> None:
    big = env.hub.repo(MODEL).files()["model.pth"]
    partial = env.out_dir / ".gatedfetch" / "partial" / f"{big.sha256}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(big.data_path.read_bytes()[: big.size // 2])
    env.hub.settings.ignore_range = True
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert (env.out_dir / "model.pth").read_bytes() == big.data_path.read_bytes()


def test_no_content_length_is_handled(env: Env, tokens: dict[str, str]) -> None:
    env.hub.settings.no_content_length = True
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    for path, data in hub_content(env.hub).items():
        assert (env.out_dir / path).read_bytes() == data


def test_transient_5xx_and_reset_are_retried(env: Env, tokens: dict[str, str]) -> None:
    env.hub.add_fault("model.pth", status=503, times=2, method="GET")
    env.hub.add_fault("codec.pth", reset_after=100_000, times=1, method="GET")
    env.hub.add_fault("/api/models/", status=502, times=1)
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    for path, data in hub_content(env.hub).items():
        assert (env.out_dir / path).read_bytes() == data


def test_429_retry_after_is_honoured(env: Env, tokens: dict[str, str]) -> None:
    env.hub.add_fault("config.json", status=429, retry_after=1, times=1, method="GET")
    t0 = time.monotonic()
    # The product's own cap on Retry-After (30 s), not the tests' shortened one: the 1 s asked is waited for.
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"], "GATEDFETCH_RETRY_AFTER_CAP": "30"})
    assert r.code == 0, r.err
    assert time.monotonic() - t0 >= 1.0
    assert (env.out_dir / "config.json").is_file() and "Traceback" not in r.text


def test_file_failing_after_retries_exits_7_with_last_cause(env: Env, tokens: dict[str, str]) -> None:
    env.hub.add_fault("codec.pth", status=500, times=None, method="GET")
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]}, timeout=180)
    assert r.code == 7, r.err
    assert "500" in r.err and "attempt" in r.err


def test_two_runs_at_once_both_end_with_good_files(env: Env, tokens: dict[str, str]) -> None:
    env.hub.settings.throttle_bps = 4_000_000
    a = env.start(env={"HF_TOKEN": tokens["accepted_read"]}, output=subprocess.PIPE)
    b = env.start(env={"HF_TOKEN": tokens["accepted_read"]}, output=subprocess.PIPE)
    assert a.wait(120) == 0, a.stderr.read() if a.stderr else ""
    assert b.wait(120) == 0, b.stderr.read() if b.stderr else ""
    for path, data in hub_content(env.hub).items():
        assert (env.out_dir / path).read_bytes() == data


def test_not_enough_space_exits_9_before_the_first_byte(env: Env, tokens: dict[str, str]) -> None:
    repo = env.hub.repo(MODEL)
    sha = repo.commit("main")
    repo.commits[sha]["model.pth"] = dataclasses.replace(repo.commits[sha]["model.pth"], size=10**16)
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 9
    assert "needed" in r.err and "free" in r.err and str(env.out_dir) in r.err
    assert not [q for q in env.hub.requests if q.server == "cdn"]


def test_progress_lines_in_logs_have_no_carriage_returns(env: Env, tokens: dict[str, str]) -> None:
    env.hub.settings.throttle_bps = 3_000_000
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "\r" not in r.err
    assert any(line.startswith("model.pth: ") and "%" in line and "MB/s" in line for line in r.err.splitlines())
    assert not any(line.startswith("README.md:") for line in r.err.splitlines())


def test_hf_hub_disable_progress_bars_turns_progress_off(env: Env, tokens: dict[str, str]) -> None:
    env.hub.settings.throttle_bps = 3_000_000
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"], "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    assert r.code == 0, r.err
    assert not any(line.startswith("model.pth: ") and "%" in line for line in r.err.splitlines()), r.err
    assert "ready:" in r.err
