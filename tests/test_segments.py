"""A big file over several streams, against the test Hub's CDN model: signed URLs bound to the range
asked at /resolve and to a lifetime, cuts and short answers in several pieces, a server that ignores
Range, a kill with pieces in flight, a flipped byte, one stream on request, and the token kept from
the CDN. First through the transfer package, then through `bash setup.sh` as a user runs it."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from gatedfetch import failures, settings
from gatedfetch.localhub import TOKENS
from gatedfetch.progress import make_progress
from gatedfetch.store import bytes_on_disk
from gatedfetch.transfer import FileResult, Usage, fetch_all, segments, streams
from gatedfetch.transfer import fetch as fetch_mod
from gatedfetch.transfer import retry as retry_mod
from tests.conftest import MODEL, Env, model_bytes, model_remote, pieces_held_at_each_take
from tests.jobs_hub import TestHub

BIG = HUB_BIG_SIZE = 24 * 1024 * 1024 + 4321  # 6 pieces at the default minimum piece size, 24 at 1 MiB
TOKEN = TOKENS["accepted_read"]


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """1 MiB pieces (24 of them, whatever the link), 64 KiB reads, and recorded near-instant backoff (the delays
    asked are the product's own)."""
    sleeps: list[float] = []
    settings.use(settings.Settings())

    def record(seconds: float, cancel: object) -> None:
        sleeps.append(seconds)
        time.sleep(min(seconds, 0.01))

    monkeypatch.setattr(segments, "MIN_PIECE", 1 << 20)
    monkeypatch.setattr(segments, "MAX_PIECE", 1 << 20)  # and never longer, whatever the link
    monkeypatch.setattr(fetch_mod, "FAST_STREAM", float("inf"))  # loopback is fast: fan out all the same
    monkeypatch.setattr(fetch_mod, "BUFFER_SIZE", 64 * 1024)
    monkeypatch.setattr(retry_mod, "_sleep", record)
    return sleeps


def fetch(hub: TestHub, out: Path, **kw: object) -> FileResult:
    rf = model_remote(hub)
    kw.setdefault("progress", make_progress("quiet"))
    return fetch_all([rf], out, out / ".gatedfetch", {"authorization": f"Bearer {TOKEN}"},
                     endpoint=hub.url, **kw)[0]  # type: ignore[arg-type]


def cdn_gets(hub: TestHub) -> list[tuple[str | None, int]]:
    sha = hub.repo(MODEL).files()["model.pth"].sha256
    return [(q.headers.get("range"), q.status) for q in hub.requests
            if q.server == "cdn" and q.method == "GET" and sha in q.path]


def resolve_gets(hub: TestHub) -> list[str | None]:
    return [q.headers.get("range") for q in hub.requests
            if q.server == "hub" and q.method == "GET" and "/resolve/" in q.path and q.path.endswith("/model.pth")]


def resolve_heads(hub: TestHub) -> list[str | None]:
    return [q.headers.get("range") for q in hub.requests
            if q.server == "hub" and q.method == "HEAD" and "/resolve/" in q.path and q.path.endswith("/model.pth")]


# --- through the package ------------------------------------------------------------------------


def test_one_resolve_without_range_serves_every_piece(hub: TestHub, tmp_path: Path, small_pieces: list[float]) -> None:
    r = fetch(hub, tmp_path)
    assert r.verified and r.fetched_bytes == BIG
    assert (tmp_path / "model.pth").read_bytes() == model_bytes(hub)
    gets = cdn_gets(hub)
    assert len(gets) == 24 and all(status == 206 for _, status in gets)
    assert all(rng and re.fullmatch(r"bytes=\d+-(\d+)?", rng) for rng, _ in gets)
    # one HEAD /resolve, without Range, for the whole file: its URL serves every range until it expires
    assert resolve_heads(hub) == [None] and resolve_gets(hub) == []


def test_the_cdn_never_sees_the_token(hub: TestHub, tmp_path: Path, small_pieces: list[float]) -> None:
    fetch(hub, tmp_path)
    cdn = [q for q in hub.requests if q.server == "cdn"]
    hub_side = [q for q in hub.requests if q.server == "hub"]
    assert cdn and all("authorization" not in q.headers for q in cdn)
    assert hub_side and all(q.headers.get("authorization") == f"Bearer {TOKEN}" for q in hub_side)


def test_a_signed_url_used_for_another_range_is_refused_by_the_test_cdn(hub: TestHub) -> None:
    """The model holds: a URL signed for one range gets 403 for another (so the test above can fail)."""
    import http.client
    from urllib.parse import urlsplit

    rf = model_remote(hub)
    p = urlsplit(rf.url)
    conn = http.client.HTTPConnection(p.hostname or "", p.port)
    conn.request("GET", p.path, headers={"authorization": f"Bearer {TOKEN}", "range": "bytes=0-99"})
    location = conn.getresponse().getheader("location") or ""
    c = urlsplit(location)
    cdn = http.client.HTTPConnection(c.hostname or "", c.port)
    cdn.request("GET", f"{c.path}?{c.query}", headers={"range": "bytes=100-199"})
    answer = cdn.getresponse()
    assert answer.status == 403 and b"invalid range" in answer.read()
    cdn.request("GET", f"{c.path}?{c.query}", headers={"range": "bytes=0-99"})
    assert cdn.getresponse().status == 206


def test_a_cdn_403_on_a_url_that_served_sends_the_file_back_to_resolve_at_once(
    hub: TestHub, tmp_path: Path, small_pieces: list[float]
) -> None:
    hub.add_fault("model.pth", server="cdn", status=403, after=5, times=1)  # the URL "expires" mid-file
    r = fetch(hub, tmp_path)
    assert r.verified and (tmp_path / "model.pth").read_bytes() == model_bytes(hub)
    assert [q.fault is not None for q in hub.requests if q.server == "cdn"].count(True) == 1  # it struck
    assert [s for _, s in cdn_gets(hub)].count(403) == 1
    assert resolve_heads(hub) == [None, None]  # one fresh URL, for every piece after
    assert small_pieces == []  # a fresh URL needs no backoff


def test_a_403_that_fresh_urls_get_again_is_a_refusal_in_the_cdns_words(
    hub: TestHub, tmp_path: Path, small_pieces: list[float]
) -> None:
    hub.settings.cdn_url_ttl = -1  # every signed URL is born expired
    with pytest.raises(failures.HubUnreachable, match=r"fresh signed URL.*403 from the CDN.*Request has expired"):
        fetch(hub, tmp_path)
    assert not (tmp_path / "model.pth").exists()
    # no endless loop: one refresh of the unranged URL, then one /resolve per request with the piece's Range
    assert resolve_heads(hub) == [None, None] and len(resolve_gets(hub)) == 1
    assert [s for _, s in cdn_gets(hub)] == [403, 403, 403]


def test_a_url_bound_to_a_range_is_used_for_that_range_only(
    hub: TestHub, tmp_path: Path, small_pieces: list[float]
) -> None:
    """A hub whose /resolve does not answer HEAD: each piece asks /resolve with its own Range and follows that
    URL, never reused for another range (the test CDN refuses that)."""
    hub.add_fault("/resolve/", server="hub", method="HEAD", status=405, times=None)
    r = fetch(hub, tmp_path)
    assert r.verified and (tmp_path / "model.pth").read_bytes() == model_bytes(hub)
    gets = cdn_gets(hub)
    assert len(gets) == 24 and all(status == 206 for _, status in gets)
    assert Counter(rng for rng, _ in gets) == Counter(resolve_gets(hub))


def test_cuts_in_several_pieces_resume_each_piece_where_it_stopped(
    hub: TestHub, tmp_path: Path, small_pieces: list[float]
) -> None:
    hub.add_fault("model.pth", server="cdn", close_after=300_000, times=4)
    hub.add_fault("model.pth", server="cdn", reset_after=200_000, times=2)
    r = fetch(hub, tmp_path)
    assert r.verified and (tmp_path / "model.pth").read_bytes() == model_bytes(hub)
    starts = [int(rng.split("=")[1].split("-")[0]) for rng, _ in cdn_gets(hub) if rng]
    mid_piece = [s for s in starts if s % (1 << 20)]
    assert len(mid_piece) >= 4  # the cut pieces asked only for what they lacked
    assert hub.bytes_sent("model.pth") <= BIG + 6 * 300_000


def test_short_and_empty_206_answers_are_completed(hub: TestHub, tmp_path: Path, small_pieces: list[float]) -> None:
    hub.add_fault("model.pth", server="cdn", short=100_000, times=3)
    hub.add_fault("model.pth", server="cdn", close_after=0, times=2)
    r = fetch(hub, tmp_path)
    assert r.verified and (tmp_path / "model.pth").read_bytes() == model_bytes(hub)


def test_5xx_and_429_in_pieces_are_retried_with_retry_after(
    hub: TestHub, tmp_path: Path, small_pieces: list[float]
) -> None:
    hub.add_fault("model.pth", server="cdn", status=503, times=2)
    hub.add_fault("model.pth", server="cdn", status=429, retry_after=3, times=1)
    r = fetch(hub, tmp_path)
    assert r.verified
    assert 3.0 in small_pieces and len(small_pieces) == 3


def test_a_200_to_a_ranged_request_falls_back_to_one_stream(
    hub: TestHub, tmp_path: Path, small_pieces: list[float]
) -> None:
    hub.settings.ignore_range = True
    r = fetch(hub, tmp_path)
    assert r.verified and (tmp_path / "model.pth").read_bytes() == model_bytes(hub)
    assert [s for _, s in cdn_gets(hub)] == [200]  # the probe's whole-file answer was used, no other piece began


def test_no_content_length_falls_back_to_one_stream(hub: TestHub, tmp_path: Path, small_pieces: list[float]) -> None:
    hub.settings.no_content_length = True
    r = fetch(hub, tmp_path)
    assert r.verified and (tmp_path / "model.pth").read_bytes() == model_bytes(hub)
    ranges = [rng for rng, _ in cdn_gets(hub)]
    assert ranges == ["bytes=0-1048575", None]  # the probe, then the whole file in one request


def test_a_flipped_byte_in_one_piece_fails_and_nothing_is_kept(
    hub: TestHub, tmp_path: Path, small_pieces: list[float]
) -> None:
    hub.add_fault("model.pth", server="cdn", flip_at=13 * (1 << 20) + 77, times=None)
    with pytest.raises(failures.IntegrityFailure, match="sha256"):
        fetch(hub, tmp_path)
    assert not (tmp_path / "model.pth").exists()
    assert list((tmp_path / ".gatedfetch" / "partial").iterdir()) == []


def test_a_fast_first_stream_fetches_the_file_alone_and_a_slow_one_fans_out(
    hub: TestHub, tmp_path: Path, small_pieces: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = pieces_held_at_each_take(monkeypatch)
    monkeypatch.setattr(fetch_mod, "FAST_STREAM", 0.0)  # every first stream counts as fast
    assert fetch(hub, tmp_path / "fast").verified
    assert max(seen) == 1
    seen.clear()
    monkeypatch.setattr(fetch_mod, "FAST_STREAM", float("inf"))  # every first stream counts as capped
    hub.settings.throttle_bps = 20_000_000
    assert fetch(hub, tmp_path / "slow").verified
    assert max(seen) >= 8


def test_a_throttled_hub_rewards_more_streams_than_the_start(
    hub: TestHub, tmp_path: Path, small_pieces: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.use(dataclasses.replace(settings.current(), stream_sample=0.03))
    monkeypatch.setattr(streams, "START", 2)
    hub.settings.throttle_bps = 8_000_000  # each connection: 8 MB/s, so each stream added pays
    usage: list[Usage] = []
    r = fetch(hub, tmp_path, connections=16, usage=usage)
    assert r.verified and r.fetched_bytes == BIG
    assert usage[0].max > streams.START
    assert hub.bytes_sent() == BIG  # more streams, not a byte twice


def test_a_cdn_refusing_connections_beyond_a_limit_gets_no_more_in_the_end(
    hub: TestHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.use(dataclasses.replace(settings.current(), stream_sample=0.03))  # Retry-After capped at 0.1 s
    monkeypatch.setattr(segments, "MIN_PIECE", 1 << 20)
    monkeypatch.setattr(fetch_mod, "FAST_STREAM", float("inf"))
    hub.settings.throttle_bps = 20_000_000
    hub.settings.max_connections = 3
    usage: list[Usage] = []
    r = fetch(hub, tmp_path, connections=8, usage=usage)
    assert r.verified and (tmp_path / "model.pth").read_bytes() == model_bytes(hub)
    assert 429 in [s for _, s in cdn_gets(hub)]
    assert usage[0].max == 8 and usage[0].final <= 3
    assert hub.bytes_sent() == BIG  # a refusal costs a request, never a byte


def test_one_connection_is_one_request_without_range(hub: TestHub, tmp_path: Path, small_pieces: list[float]) -> None:
    r = fetch(hub, tmp_path, connections=1)
    assert r.verified and cdn_gets(hub) == [(None, 200)]


def test_progress_counts_every_piece_in_one_line_per_step(
    hub: TestHub, tmp_path: Path, small_pieces: list[float]
) -> None:
    stream = io.StringIO()
    fetch(hub, tmp_path, progress=make_progress("lines", stream))
    lines = stream.getvalue().splitlines()
    assert all(line.startswith("model.pth: ") for line in lines) and len(lines) <= 12
    assert lines[-1].startswith("model.pth: 100% 25/25 MB")


def test_resume_keeps_every_recorded_piece(hub: TestHub, tmp_path: Path, small_pieces: list[float]) -> None:
    # A first run stopped part-way: after 0.5 s every new request to the CDN fails.
    hub.settings.throttle_bps = 1_000_000  # a 1 MiB piece takes ~1 s
    timer = threading.Timer(0.5, lambda: hub.add_fault("model.pth", server="cdn", status=500, times=None))
    timer.start()
    with pytest.raises(failures.HubUnreachable):
        fetch(hub, tmp_path, retries=2)
    timer.join()
    sha = model_remote(hub).sha256 or ""
    kept = bytes_on_disk(tmp_path / ".gatedfetch", sha, BIG)
    assert 0 < kept < BIG
    hub.clear_faults()
    hub.settings.throttle_bps = None
    hub.clear_requests()
    r = fetch(hub, tmp_path)
    assert r.verified and r.resumed_from == kept and r.fetched_bytes == BIG - kept
    assert hub.bytes_sent("model.pth") <= 1.05 * (BIG - kept)


# --- through setup.sh (conftest's `env` fixture, on this module's `hub` with the big file) ------------


def test_setup_kill_with_pieces_in_flight_then_rerun_fetches_only_what_is_missing(env: Env) -> None:
    env.hub.settings.throttle_bps = 2_000_000  # 6 pieces at 2 MB/s each: ~2 s for the file
    proc = env.start(env={"HF_TOKEN": TOKEN})
    sha = model_remote(env.hub).sha256 or ""
    work = env.out_dir / ".gatedfetch"
    deadline = time.monotonic() + 60
    while bytes_on_disk(work, sha, BIG) < BIG // 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = bytes_on_disk(work, sha, BIG)
    assert BIG // 3 <= kept < BIG
    in_flight = [rng for rng, _ in cdn_gets(env.hub)]
    assert len(in_flight) >= 3  # several pieces were being fetched at once
    env.hub.settings.throttle_bps = None
    env.hub.clear_requests()
    r = env.run("--json", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    assert (env.out_dir / "model.pth").read_bytes() == model_bytes(env.hub)
    doc = {f["path"]: f for f in r.json()["files"]}
    assert doc["model.pth"]["resumed_from"] == kept and doc["model.pth"]["fetched_bytes"] == BIG - kept
    assert env.hub.bytes_sent(sha) <= 1.05 * (BIG - kept)
    assert list((work / "partial").iterdir()) == []


def test_setup_flipped_byte_in_a_piece_exits_8_and_keeps_nothing(env: Env) -> None:
    env.hub.add_fault("model.pth", server="cdn", flip_at=9 * (1 << 20) + 5, times=None)
    r = env.run(env={"HF_TOKEN": TOKEN})
    assert r.code == 8, r.err
    assert "model.pth" in r.err and "sha256" in r.err
    assert not (env.out_dir / "model.pth").exists()
    assert list((env.out_dir / ".gatedfetch" / "partial").iterdir()) == []


def test_setup_connections_1_fetches_each_file_in_one_request(env: Env) -> None:
    r = env.run("--connections", "1", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    assert cdn_gets(env.hub) == [(None, 200)]


def test_setup_takes_the_connections_from_the_environment(env: Env) -> None:
    r = env.run(env={"HF_TOKEN": TOKEN, "GATEDFETCH_CONNECTIONS": "1"})
    assert r.code == 0, r.err
    assert cdn_gets(env.hub) == [(None, 200)]


@pytest.mark.parametrize(("args", "extra", "named"), [
    (("--connections", "0"), {}, "--connections '0'"),
    (("--connections", "many"), {}, "--connections 'many'"),
    ((), {"GATEDFETCH_CONNECTIONS": "999"}, "GATEDFETCH_CONNECTIONS '999'"),
])
def test_setup_bad_connection_counts_are_usage_errors(
    env: Env, args: tuple[str, ...], extra: dict[str, str], named: str
) -> None:
    r = env.run(*args, env={"HF_TOKEN": TOKEN, **extra})
    assert r.code == 2 and named in r.err and "1 to 64" in r.err
    assert env.hub.requests == []


def test_setup_default_fetches_the_big_file_in_pieces_without_the_token_on_the_cdn(env: Env) -> None:
    r = env.run(env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    gets = cdn_gets(env.hub)
    assert len(gets) == 6 and all(s == 206 for _, s in gets)
    assert all("authorization" not in q.headers for q in env.hub.requests if q.server == "cdn")


def test_setup_json_and_ready_line_say_how_many_streams_under_a_cdn_limit(env: Env) -> None:
    env.hub.settings.throttle_bps = 20_000_000
    env.hub.settings.max_connections = 4
    r = env.run("--json", env={"HF_TOKEN": TOKEN, "GATEDFETCH_STREAM_SAMPLE": "0.03"})
    assert r.code == 0, r.err
    used = json.loads(r.out)["streams"]
    assert 1 <= used["final"] <= 4 and used["max"] >= used["mean"] > 0
    assert 429 in [s for _, s in cdn_gets(env.hub)]
    assert re.search(r"transfer [0-9.]+ s at \d+ MB/s over \d+ streams \(at most \d+\)", r.err), r.err
