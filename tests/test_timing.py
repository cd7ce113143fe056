"""Where the time went: the clock's parts and its line, with a clock a test moves by hand."""

from __future__ import annotations

from gatedfetch.timing import Clock


class Hand:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_parts_add_up_from_setup_sh_s_start() -> None:
    hand = Hand(1000.0)
    clock = Clock(started=998.0, now=hand)  # setup.sh started 2 s before the helper
    hand.t = 1000.4
    clock.transfer_begins()
    hand.t = 1007.1
    clock.transfer_ends(3_618_000_000)
    t = clock.timings()
    assert t == {"environment": 2.0, "checks": 0.4, "transfer": 6.7, "total": 9.1}
    assert clock.summary(t) == "ready in 9.1 s: environment 2.0 s, checks 0.4 s, transfer 6.7 s at 540 MB/s"


def test_a_run_without_a_transfer_spends_it_all_on_checks_and_names_no_rate() -> None:
    hand = Hand(50.0)
    clock = Clock(started=49.9, now=hand)
    hand.t = 50.2
    t = clock.timings()
    assert t == {"environment": 0.1, "checks": 0.2, "transfer": 0.0, "total": 0.3}
    assert "MB/s" not in clock.summary(t)


def test_a_start_time_that_cannot_be_true_counts_from_the_helper() -> None:
    for started in ("abc", "-1", "4102444800", "1"):  # not a number, negative, in the future, a day and more ago
        clock = Clock.from_environ({"GATEDFETCH_STARTED": started})
        assert clock.started == clock.helper
    fresh = Clock.from_environ({})
    assert fresh.started == fresh.helper
