"""How many streams fetch at once (transfer/streams.py): the controller's decisions as a pure function of the
rates it is shown, and the pool's side of it (busy streams over time, buffers within their budget). No clock."""

from __future__ import annotations

import dataclasses
import os

import pytest

from gatedfetch.transfer import streams
from gatedfetch.transfer.streams import Control, Steering, buffer_size, on_sample, on_trouble, start

DT = 0.15  # the sampling interval the samples below stand for
PER = 10e6  # bytes/s one stream brings on a link that caps each connection at 10 MB/s


class Run:
    """A controller fed samples one interval apart, from time 0."""

    def __init__(self, ceiling: int = 64) -> None:
        self.c = start(ceiling)
        self.now = 0.0

    def sample(self, rate: float, busy: float | None = None) -> Control:
        self.now += DT
        self.c = on_sample(self.c, self.now, rate, self.c.target if busy is None else busy, DT)
        return self.c

    def settle(self, rate_of: object) -> Control:
        """Samples until the count moves (or 20 samples), each at the rate `rate_of(target)` (all streams busy)."""
        assert callable(rate_of)
        before = self.c.target
        for _ in range(20):
            self.sample(rate_of(self.c.target))
            if self.c.target != before:
                break
        return self.c

    def trouble(self, busy: int, *, refused: bool, retry_after: float | None = None, later: float = 0.0) -> Control:
        self.now += later
        self.c = on_trouble(self.c, self.now, busy, DT, refused=refused, retry_after=retry_after)
        return self.c


def capped(link: float) -> object:
    """The rate of n streams at PER each, up to a link (or a CPU) of `link` bytes/s."""
    return lambda n: min(n * PER, link)


def test_it_starts_at_16_under_the_ceiling_and_one_means_one() -> None:
    assert start(64).target == 16
    assert start(8).target == 8
    assert start(1).target == 1 and start(0).target == 1


def test_the_sample_after_a_change_is_skipped_and_then_two_make_a_judgement() -> None:
    r = Run()
    r.sample(0.0)  # the skip: new streams still asking /resolve and the CDN
    assert r.c.target == 16
    r.sample(16 * PER)
    assert r.c.target == 16  # one sample of the window
    r.sample(16 * PER)
    assert r.c.target == 64  # slow start: x4


def test_samples_without_work_for_every_stream_teach_nothing() -> None:
    r = Run()
    for _ in range(10):
        r.sample(PER, busy=1)  # the probe, or one fast stream alone, or a file's tail
    assert r.c.target == 16 and r.c.base is None


def test_a_slow_per_connection_link_is_rewarded_up_to_the_ceiling() -> None:
    r = Run()
    assert r.settle(capped(1e12)).target == 64
    assert r.settle(capped(1e12)).target == 64  # the ceiling: no further
    assert r.c.doubling  # never unrewarded, never refused


def test_a_lower_ceiling_is_never_passed() -> None:
    r = Run(ceiling=40)
    assert r.settle(capped(1e12)).target == 40


def test_an_increase_that_brings_nothing_is_undone_and_held() -> None:
    r = Run()
    r.settle(capped(16 * PER))  # 16 streams fill the link (or the CPU)
    assert r.c.target == 64
    r.settle(capped(16 * PER))
    assert r.c.target == 16 and not r.c.doubling
    hold_ends = r.c.hold_until
    while r.now + DT < hold_ends:
        r.sample(16 * PER)
        assert r.c.target == 16  # no probe while held
    r.settle(capped(16 * PER))
    assert r.c.target == 20  # then small steps: a quarter more


def test_a_falling_rate_after_an_increase_is_undone() -> None:
    r = Run()
    r.settle(capped(1e12))
    assert r.c.target == 64
    r.settle(lambda n: 16 * PER * 0.7)  # more streams made it slower: back to where it was
    assert r.c.target == 16


def test_a_partial_gain_keeps_the_streams_it_paid_for() -> None:
    r = Run()
    r.settle(capped(24 * PER))  # the knee is at 24 streams
    assert r.c.target == 64
    r.settle(capped(24 * PER))  # 8 streams' worth more than at 16, a sixth of 48: 24 kept, not 16, not 64
    assert r.c.target == 24


def test_the_start_is_judged_against_the_probe_of_one_stream() -> None:
    r = Run()
    r.c = streams.on_fan_out(r.c, 300e6)  # one stream ran at 300 MB/s: loopback, or a CPU that runs out
    r.settle(lambda n: 400e6)  # 16 bring a third more, not 16 times: back to what that paid for
    assert r.c.target == 1 and not r.c.doubling
    r = Run()
    r.c = streams.on_fan_out(r.c, PER)  # one stream at 10 MB/s: 16 bring 16 times that, then 64
    assert r.settle(capped(1e12)).target == 64


def test_a_429_halves_the_count_and_caps_it_below_the_refused_count() -> None:
    r = Run()
    r.settle(capped(1e12))
    c = r.trouble(64, refused=True, retry_after=2.0)
    assert c.target == 32 and c.cap == 63 and not c.doubling
    assert c.hold_until == pytest.approx(r.now + 2.0)  # Retry-After respected: no growth before


def test_a_burst_of_refusals_is_one_cut_but_lowers_the_cap_each_time() -> None:
    r = Run()
    r.trouble(16, refused=True, retry_after=1.0)
    for busy in (15, 14, 13, 12, 11, 10, 9):  # each refused stream parks: the next refusal sees one less
        r.trouble(busy, refused=True, retry_after=1.0, later=0.001)
    assert r.c.target == 8 and r.c.cap == 8


def test_after_refusals_it_never_grows_past_the_cap() -> None:
    r = Run()
    r.trouble(16, refused=True, retry_after=1.0)
    r.trouble(9, refused=True, retry_after=1.0, later=0.001)
    assert r.c.cap == 8
    r.now += 1.0
    r.c = dataclasses.replace(r.c, target=4)
    for _ in range(60):
        r.sample(r.c.target * PER)
    assert r.c.target == 8


def test_a_503_is_a_refusal_too_and_a_refusal_at_one_stream_only_waits() -> None:
    r = Run(ceiling=64)
    c = r.trouble(1, refused=True, retry_after=5.0)
    assert c.target == 1 and c.cap == 64  # a rate limit, not a count: no cap from one stream
    assert c.hold_until == pytest.approx(r.now + 5.0)


def test_a_reset_or_a_stall_cuts_a_quarter_without_a_cap() -> None:
    r = Run()
    r.settle(capped(1e12))
    c = r.trouble(64, refused=False)
    assert c.target == 48 and c.cap == 64 and not c.doubling
    c = r.trouble(48, refused=False, later=DT / 10)  # within the same interval: no second cut
    assert c.target == 48
    c = r.trouble(48, refused=False, later=DT)
    assert c.target == 36


def test_cuts_never_go_below_one() -> None:
    r = Run(ceiling=2)
    for _ in range(5):
        r.trouble(1, refused=False, later=DT)
    assert r.c.target == 1


@pytest.mark.parametrize(("ceiling", "size"), [(1, 1 << 20), (16, 1 << 20), (32, 512 << 10), (64, 256 << 10)])
def test_buffers_shrink_as_the_ceiling_grows_and_stay_within_budget(ceiling: int, size: int) -> None:
    assert buffer_size(ceiling, 1 << 20, 3) == size
    assert (ceiling - 1) * 3 * size + 3 * (1 << 20) <= streams.BUFFER_BUDGET + 3 * (1 << 20)


def test_the_pool_side_counts_busy_streams_over_time_and_parks_the_excess() -> None:
    t = [0.0]
    s = Steering(8, DT, clock=lambda: t[0])
    for _ in range(8):
        s.started()
    t[0] = 1.0
    for _ in range(4):
        s.stopped()
    t[0] = 2.0
    u = s.usage()
    assert u.max == 8 and u.mean == pytest.approx(6.0) and u.final == 8
    assert s.trouble(0, None) is True  # a reset with 4 busy: a quarter off, 3 allowed: the stream parks
    assert s.target == 3
    s.stopped()
    assert s.trouble(0, None) is False  # news of the same trouble within the interval: no second cut
    t[0] = 3.0
    assert s.trouble(503, 1.0) is True  # refused with 3 busy: halved to 1, capped at 2: this one parks
    assert (s.target, s.control.cap) == (1, 2)
    assert s.usage().as_dict() == {"max": 8, "mean": pytest.approx(5.0), "final": 1}


def test_growth_stops_at_what_the_cpu_left_can_feed() -> None:
    """16 streams that already use 60 % of the machine's CPU: at most 16 x 0.9 / 0.6 = 24, not 64 (on a 2-core
    machine with 50 MB/s per connection, quadrupling to 64 cost more in threads than it brought)."""
    c = start(64)
    for i in range(3):  # the skip, then a window of two samples
        c = on_sample(c, DT * (i + 1), 16 * 30e6, 16, DT, cpu=0.6)
    assert c.target == 24


def test_no_growth_where_the_cpu_is_what_runs_out() -> None:
    c = start(64)
    for i in range(3):
        c = on_sample(c, DT * (i + 1), 16 * 30e6, 16, DT, cpu=0.95)
    assert c.target == 16 and c.base is None


def test_a_cpu_share_not_known_leaves_growth_to_the_gain_test() -> None:
    c = start(64)
    for i in range(3):
        c = on_sample(c, DT * (i + 1), 16 * PER, 16, DT)  # cpu 0: not known
    assert c.target == 64


def test_the_pool_side_measures_the_cpu_share_of_the_whole_machine() -> None:
    t, used = [0.0], [0.0]
    s = Steering(64, DT, clock=lambda: t[0], cpu=lambda: used[0])
    for _ in range(16):
        s.started()
    for _ in range(3):
        t[0] += DT
        used[0] += DT * (os.cpu_count() or 1) * 0.95  # the process keeps 95 % of every core busy
        s.count(int(16 * 30e6 * DT))
        s.sample()
    assert s.target == 16  # no more streams than the CPU can feed
