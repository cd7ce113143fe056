"""One file's transfer as a state machine (transfer.job.Job), driven in-process with no network: the legal
transitions, and a transition asked from a wrong state refused."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from gatedfetch import failures, store
from gatedfetch.progress import make_progress
from gatedfetch.store import Piece
from gatedfetch.transfer.job import _NEXT, Job, State, WrongState
from gatedfetch.transfer.records import RemoteFile

MiB = 1 << 20
BIG = 16 * MiB  # cut in 4 pieces of 4 MiB over 4 streams
SMALL = 1 * MiB  # too small to cut: one stream


def content(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


def make_job(tmp_path: Path, size: int = BIG, cond: threading.Condition | None = None) -> Job:
    for folder in ("partial", "locks", "done"):  # as fetch_all makes them
        (tmp_path / ".gatedfetch" / folder).mkdir(parents=True, exist_ok=True)
    rf = RemoteFile("model.bin", size, "http://127.0.0.1:9/model.bin", hashlib.sha256(content(size)).hexdigest(), None)
    return Job(rf, tmp_path / "out" / rf.path, tmp_path / ".gatedfetch", 4, make_progress("quiet"), cond)


def fill(job: Job, piece: Piece, upto: int | None = None) -> None:
    """Write what `piece` lacks (up to `upto` bytes from its start), as a stream does."""
    data = content(job.rf.size)
    pos, end = piece.start + piece.done, piece.start + (piece.length if upto is None else upto)
    view = memoryview(data)[pos:end]
    job.partial.write(pos, view)
    job.offer(pos, view)
    job.wrote(piece, len(view))


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Job]:
    j = make_job(tmp_path)
    yield j
    j.close()


def test_probe_fans_out_then_every_piece_comes_and_the_file_is_done(job: Job) -> None:
    assert job.state is State.WAIT and job.activate() and job.state is State.PROBE
    probe = job.take()
    assert probe is not None and job.take() is None  # one piece out while probing
    fill(job, probe, MiB)
    job.fan_out(2)
    assert job.state is State.RANGED
    second = job.take()
    assert second is not None and job.take() is None  # two streams at most
    fill(job, probe)
    job.release(probe)
    fill(job, second)
    job.release(second)
    while (p := job.take()) is not None:
        fill(job, p)
        job.release(p)
    assert job.ready_to_finish() and not job.ready_to_finish()  # once
    assert job.finish(threading.Event())
    assert job.state is State.DONE and job.result is not None and job.result.verified
    assert job.dest.read_bytes() == content(BIG) and not job.lock.is_locked
    job.close()  # over already: nothing changes
    assert job.state is State.DONE


def test_a_small_file_is_one_stream_from_the_start(tmp_path: Path) -> None:
    job = make_job(tmp_path, SMALL)
    assert job.activate() and job.state is State.SINGLE
    piece = job.take()
    assert piece is not None and job.take() is None
    fill(job, piece)
    job.release(piece)
    assert job.ready_to_finish() and job.finish(threading.Event()) and job.state is State.DONE


def test_a_probe_without_a_length_becomes_one_stream_keeping_its_bytes(job: Job) -> None:
    job.activate()
    probe = job.take()
    assert probe is not None
    fill(job, probe, MiB)
    job.release(probe)
    job.one_stream()
    assert job.state is State.SINGLE and job.pieces[0].done == MiB  # the bytes on disk stay
    assert [p.start for p in job.pieces] == [0, MiB]  # one gap left, one request


def test_a_server_that_ignores_the_range_starts_the_file_over_with_the_stream_holding_byte_0(job: Job) -> None:
    job.activate()
    probe = job.take()
    assert probe is not None
    fill(job, probe, MiB)
    held = job.restart_single(hold=True)
    assert job.state is State.SINGLE and held is job.pieces[0] and held.start == 0 and held.done == 0
    assert job.take() is None  # the holder is the one stream
    assert job.restart_single() is job.pieces[0] and job.state is State.SINGLE  # single → single again
    assert job.take() is job.pieces[0]  # not held this time: free for the one stream


def test_a_416_starts_over_once_and_never_when_ranged(job: Job, tmp_path: Path) -> None:
    job.activate()
    assert job.on_416() and job.state is State.SINGLE
    assert not job.on_416()  # once only: the next one is the server's refusal
    ranged = make_job(tmp_path / "other")
    ranged.activate()
    ranged.fan_out(4)
    assert not ranged.on_416() and ranged.state is State.RANGED
    ranged.close()


def test_a_lock_held_elsewhere_keeps_the_job_waiting(job: Job) -> None:
    other = FileLock(str(store.lock_path(job.work_dir, job.key)), thread_local=False)
    other.acquire()
    try:
        assert not job.activate() and job.state is State.WAIT
        assert job.take() is None and not job.ready_to_finish()
    finally:
        other.release()
    assert job.activate() and job.state is State.PROBE


def test_a_marker_makes_the_job_done_without_a_byte(tmp_path: Path) -> None:
    first = make_job(tmp_path, SMALL)
    first.activate()
    piece = first.take()
    assert piece is not None
    fill(first, piece)
    first.release(piece)
    assert first.ready_to_finish() and first.finish(threading.Event())
    second = make_job(tmp_path, SMALL)
    assert second.activate() and second.state is State.DONE
    assert second.result is not None and second.result.fetched_bytes == 0 and second.result.source == "download"


def test_closing_keeps_a_partial_with_bytes_and_drops_an_empty_one(tmp_path: Path) -> None:
    empty = make_job(tmp_path / "a")
    empty.activate()
    empty.close()
    assert empty.state is State.CLOSED and not empty.partial.path.exists() and not empty.lock.is_locked
    kept = make_job(tmp_path / "b")
    kept.activate()
    piece = kept.take()
    assert piece is not None
    fill(kept, piece, MiB)
    kept.close()
    assert kept.state is State.CLOSED and kept.partial.path.stat().st_size == MiB
    again = make_job(tmp_path / "b")
    assert again.activate() and again.resumed_from == MiB
    again.close()


def test_bad_bytes_of_an_earlier_run_are_fetched_once_more_then_refused(tmp_path: Path) -> None:
    part = store.partial_path(tmp_path / ".gatedfetch", make_job(tmp_path).key)
    part.write_bytes(b"\xff" * MiB)  # an earlier run's garbage
    job = make_job(tmp_path)
    job.activate()
    while (p := job.take()) is not None or job.state is State.PROBE:
        if p is None:
            job.fan_out(4)
            continue
        fill(job, p)
        job.release(p)
    assert job.ready_to_finish() and not job.finish(threading.Event())
    assert job.state is State.PROBE and job.resumed_from == 0  # planned anew from byte 0
    job.close()


@pytest.mark.parametrize(
    ("prepare", "call"),
    [
        ("wait", lambda j: j.fan_out(4)),
        ("wait", lambda j: j.one_stream()),
        ("wait", lambda j: j.restart_single()),
        ("probe", lambda j: j.activate()),
        ("ranged", lambda j: j.fan_out(4)),
        ("ranged", lambda j: j.one_stream()),
        ("ranged", lambda j: j.restart_single(hold=True)),
        ("single", lambda j: j.fan_out(4)),
        ("single", lambda j: j.one_stream()),
        ("closed", lambda j: j.activate()),
        ("closed", lambda j: j.fan_out(4)),
        ("closed", lambda j: j.restart_single()),
    ],
)
def test_a_transition_from_a_wrong_state_raises(job: Job, prepare: str, call: Callable[[Job], object]) -> None:
    if prepare != "wait":
        job.activate()
    if prepare == "ranged":
        job.fan_out(4)
    elif prepare == "single":
        job.restart_single()
    elif prepare == "closed":
        job.close()
    before = job.state
    with pytest.raises(WrongState, match="model.bin: cannot"):
        call(job)
    assert job.state is before


def test_the_ends_lead_nowhere_and_every_state_can_stop() -> None:
    assert _NEXT[State.DONE] == _NEXT[State.CLOSED] == frozenset()
    for state in (State.WAIT, State.PROBE, State.SINGLE, State.RANGED):
        assert {State.DONE, State.CLOSED} <= _NEXT[state]
    assert State.RANGED not in _NEXT[State.SINGLE] | _NEXT[State.WAIT]  # only a probe fans out


def test_the_scheduler_may_hold_the_shared_condition_and_is_woken_by_a_release(tmp_path: Path) -> None:
    cond = threading.Condition()
    job = make_job(tmp_path, cond=cond)
    with cond:  # as the pool asks: its condition held, the job's methods take it again
        assert job.activate()
        piece = job.take()
    assert piece is not None
    woke: list[Piece | None] = []

    def waiter() -> None:
        with cond:
            while (p := job.take()) is None:
                cond.wait(5)
            woke.append(p)

    t = threading.Thread(target=waiter)
    t.start()
    fill(job, piece, MiB)
    job.release(piece)  # the probe's piece is free again: the waiter gets it
    t.join(5)
    assert woke == [piece]
    job.close()


def test_a_hash_mismatch_of_fresh_bytes_is_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path, SMALL)
    job.activate()
    piece = job.take()
    assert piece is not None
    view = memoryview(b"\0" * SMALL)
    job.partial.write(0, view)
    job.wrote(piece, SMALL)
    job.release(piece)
    assert job.ready_to_finish()
    with pytest.raises(failures.IntegrityFailure, match="sha256"):
        job.finish(threading.Event())
    assert not job.partial.path.exists() and not job.dest.exists()
    job.close()
    assert job.state is State.CLOSED
