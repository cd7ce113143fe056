"""A transfer that never sits still silently: an answer that trickles is cut and asked again, a file left to one
fast stream that stalls gets the others, a network gone black ends the run (exit 7) after lines that say so, and
the next run resumes. The bounds are pure functions of an injected clock (watch.Pace, watch.Silence), then the real
pool against the local hub, whose record shows each fault struck. Every wait comes from settings the tests shorten."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from gatedfetch import failures, settings
from gatedfetch.localhub import TOKENS
from gatedfetch.progress import make_progress
from gatedfetch.store import bytes_on_disk
from gatedfetch.transfer import FileResult, fetch_all, segments
from gatedfetch.transfer import fetch as fetch_mod
from gatedfetch.transfer.http import Retry
from gatedfetch.transfer.watch import Pace, Silence
from tests.conftest import Clock, Env, model_bytes, model_remote, pieces_held_at_each_take
from tests.jobs_hub import TestHub

BIG = HUB_BIG_SIZE = 8 * 1024 * 1024 + 99
TOKEN = TOKENS["accepted_read"]
MiB = 1 << 20


# --- the bounds, pure ---------------------------------------------------------------------------


def test_an_answer_under_its_floor_for_the_speed_time_is_cut() -> None:
    clock = Clock()
    pace = Pace(10.0, lambda: 16384.0, clock)
    for _ in range(9):  # a byte a second: nothing said before the window is over
        clock.now += 1
        pace.heard(1)
        pace.check()
    clock.now += 1
    with pytest.raises(Retry) as info:
        pace.check("cdn:443")
    assert info.value.slow and "under the floor of 16.4 kB/s" in info.value.cause and "cdn:443" in info.value.cause


def test_an_answer_at_its_floor_goes_on_window_after_window() -> None:
    clock = Clock()
    pace = Pace(10.0, lambda: 16384.0, clock)
    for _ in range(100):
        clock.now += 1
        pace.heard(16384)
        pace.check()  # never raises


def test_silence_says_a_line_then_drops_the_connections_then_ends() -> None:
    clock = Clock()
    silence = Silence(line_every=20.0, deadline=60.0, clock=clock)
    seen = []
    for _ in range(70):
        clock.now += 1
        verdict = silence.tick(busy=True)
        if verdict is not None:
            seen.append((round(verdict.silent_for), verdict.line, verdict.nudge, verdict.end))
        if verdict is not None and verdict.end:
            break
    assert seen == [(20, True, False, False), (30, False, True, False), (40, True, False, False),
                    (60, False, False, True)]


def test_silence_counts_only_while_a_stream_waits_and_a_byte_resets_it() -> None:
    clock = Clock()
    silence = Silence(line_every=20.0, deadline=60.0, clock=clock)
    clock.now += 100
    assert silence.tick(busy=False) is None  # nothing was asked: nothing to wait for
    clock.now += 19
    assert silence.tick(busy=True) is None
    silence.heard()
    clock.now += 19
    assert silence.tick(busy=True) is None


# --- the pool against the local hub -------------------------------------------------------------


@pytest.fixture
def short(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 MiB pieces, quick bounds: a floor over 0.3 s, a line after 0.2 s of silence, the end after 1 s."""
    settings.use(dataclasses.replace(
        settings.Settings(), speed_time=0.3, stall_line=0.2, stall_deadline=1.0, stream_sample=0.02,
        backoff_base=0.01, backoff_cap=0.02,
    ))
    monkeypatch.setattr(segments, "MIN_PIECE", MiB)
    monkeypatch.setattr(segments, "MAX_PIECE", MiB)
    monkeypatch.setattr(fetch_mod, "FAST_STREAM", float("inf"))


def fetch(hub: TestHub, out: Path, said: list[str] | None = None, **kw: object) -> FileResult:
    return fetch_all([model_remote(hub)], out, out / ".gatedfetch", {"authorization": f"Bearer {TOKEN}"},
                     progress=make_progress("quiet"), endpoint=hub.url,
                     say=(said if said is not None else []).append, **kw)[0]  # type: ignore[arg-type]


def struck(hub: TestHub, kind: str) -> list[int]:
    """The CDN requests that met a fault of this kind (their body bytes sent)."""
    return [q.bytes_sent for q in hub.requests
            if q.server == "cdn" and q.fault is not None and getattr(q.fault, kind) is not None]


def test_a_piece_that_trickles_is_cut_and_the_file_completes(hub: TestHub, tmp_path: Path, short: None) -> None:
    hub.add_fault("model.pth", server="cdn", slow_after=300_000, after=2, times=1)  # a sick edge, mid-file
    started = time.monotonic()
    r = fetch(hub, tmp_path)
    assert r.verified and (tmp_path / "model.pth").read_bytes() == model_bytes(hub)
    (sent,) = struck(hub, "slow_after")
    assert 300_000 <= sent < 300_000 + 100  # it trickled, then was cut: a few bytes, not the piece
    assert time.monotonic() - started < 30
    assert hub.bytes_sent("model.pth") + hub.bytes_sent(model_remote(hub).sha256 or "") <= 2 * BIG


def test_a_fast_lone_stream_that_stalls_gets_the_others(
    hub: TestHub, tmp_path: Path, short: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.use(dataclasses.replace(settings.current(), speed_time=30.0))  # the floor must not be what saves it
    monkeypatch.setattr(fetch_mod, "FAST_STREAM", 0.0)  # the first stream counts as fast: it is left alone ...
    monkeypatch.setattr(fetch_mod, "REVISIT", 0.2)
    monkeypatch.setattr(fetch_mod, "SLOWED", 1e6)
    seen = pieces_held_at_each_take(monkeypatch)
    hub.settings.throttle_bps = 200_000  # ... and then runs at 200 kB/s: far below a fast stream
    hub.add_fault("model.pth", server="cdn", slow_after=150_000, after=1, times=1)
    started = time.monotonic()
    r = fetch(hub, tmp_path, connections=8)
    assert r.verified and (tmp_path / "model.pth").read_bytes() == model_bytes(hub)
    assert max(seen) >= 4  # the others joined in
    assert struck(hub, "slow_after")
    assert time.monotonic() - started < 30


def test_a_network_gone_black_ends_the_run_with_lines_and_the_next_run_resumes(
    hub: TestHub, tmp_path: Path, short: None
) -> None:
    hub.add_fault("model.pth", server="cdn", freeze_after=MiB // 2, times=1)  # the probe stops mid-way ...
    hub.add_fault("model.pth", server="cdn", silent=600, times=None)  # ... and nothing answers any more
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(failures.HubUnreachable, match=r"no byte for 1 s while waiting for model.pth from 127.0.0.1:"):
        fetch(hub, tmp_path, said)
    assert time.monotonic() - started < 20
    assert struck(hub, "freeze_after") == [MiB // 2]
    assert len(struck(hub, "silent")) >= 1  # the connections were dropped and asked anew
    assert said and all("still trying" in line and "model.pth" in line for line in said)
    kept = bytes_on_disk(tmp_path / ".gatedfetch", model_remote(hub).sha256 or "", BIG)
    assert kept >= MiB // 2
    hub.clear_faults()
    r = fetch(hub, tmp_path)
    assert r.verified and r.resumed_from == kept and r.fetched_bytes == BIG - kept


def test_setup_on_a_network_gone_black_exits_7_saying_so_and_the_next_run_resumes(env: Env) -> None:
    env.hub.add_fault("model.pth", server="cdn", freeze_after=1 << 20, times=1)
    env.hub.add_fault("model.pth", server="cdn", silent=600, times=None)
    quick = {"HF_TOKEN": TOKEN, "GATEDFETCH_STALL_LINE": "0.3", "GATEDFETCH_STALL_DEADLINE": "1.5"}
    r = env.run(env=quick)
    assert r.code == 7, r.err
    assert "no byte for" in r.err and "still trying" in r.err and "run `bash setup.sh` again" in r.err
    assert [q.bytes_sent for q in env.hub.requests if q.fault is not None and q.fault.freeze_after] == [1 << 20]
    env.hub.clear_faults()
    r = env.run("--json", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    doc = {f["path"]: f for f in r.json()["files"]}
    assert doc["model.pth"]["resumed_from"] >= 1 << 20
