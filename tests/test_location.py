"""Where a big file's pieces are asked from (transfer/location.py): the signed URL of one HEAD /resolve without
Range, until shortly before its expiry (judged against the answer's Date, not the local clock), a refresh after a
CDN 403, and a refusal when fresh URLs are refused again. Then the sizes the link gives pieces, and the
controller's wait of a few round trips before it judges a change (pure)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatedfetch.localhub import MODEL, TOKENS
from gatedfetch.transfer import segments, streams
from gatedfetch.transfer.http import Client
from gatedfetch.transfer.location import Location, expires_in
from tests.conftest import Clock
from tests.jobs_hub import TestHub

HEADERS = {"authorization": f"Bearer {TOKENS['accepted_read']}", "Accept-Encoding": "identity"}
MiB = 1 << 20


@pytest.fixture
def hub() -> Iterator[TestHub]:
    with TestHub() as h:
        yield h


def resolve_url(hub: TestHub) -> str:
    return f"{hub.url}/{MODEL}/resolve/{hub.repo(MODEL).commit()}/model.pth"


def heads(hub: TestHub) -> int:
    return sum(1 for q in hub.requests if q.method == "HEAD" and "/resolve/" in q.path)


def test_expiry_is_read_from_the_url_and_judged_against_the_answers_date() -> None:
    date = "Sun, 06 Dec 2026 07:00:00 GMT"  # 1796540400
    url = "https://cdn.example/x?Expires=1796540420&Signature=s"
    assert expires_in(url, date, now=0.0) == 20.0  # a local clock hours off does not matter
    assert expires_in("https://s3.example/x?X-Amz-Date=20261206T070000Z&X-Amz-Expires=3600", None, 5.0) == 3600.0
    assert expires_in("https://cdn.example/x?Expires=1796540420", None, 1796540400.0) == 20.0
    assert expires_in("https://cdn.example/x", date, 0.0) is None


def test_one_resolve_serves_until_shortly_before_expiry(hub: TestHub) -> None:
    hub.settings.cdn_url_ttl = 20
    clock = Clock()
    loc = Location(resolve_url(hub), margin=10.0, clock=clock)
    client = Client(5.0)
    first = loc.get(client, HEADERS)
    assert not first.direct and first.url.startswith(hub.cdn_url) and heads(hub) == 1
    clock.now += 14  # a quarter of a 20 s life is kept in hand: good until 15 s
    assert loc.get(client, HEADERS) == first and heads(hub) == 1
    clock.now += 2
    second = loc.get(client, HEADERS)
    assert second.generation == 2 and heads(hub) == 2
    assert all("authorization" in q.headers for q in hub.requests)  # HEADs went to the hub only


def test_a_403_after_the_url_served_refreshes_and_fresh_urls_refused_again_are_a_refusal(hub: TestHub) -> None:
    loc = Location(resolve_url(hub), margin=10.0)
    client = Client(5.0)
    first = loc.get(client, HEADERS)
    loc.served(first)
    assert loc.refused(first)  # it served: this 403 is its expiry
    assert loc.refused(first)  # another stream's news of the same 403
    second = loc.get(client, HEADERS)
    assert second.generation == 2 and not second.direct
    assert loc.refused(second)  # a fresh URL refused: once more, as a /resolve per request
    third = loc.get(client, HEADERS)
    assert third.direct and third.url == resolve_url(hub)
    assert not loc.refused(third)  # refused that way too: a real refusal
    assert heads(hub) == 2


def test_a_hub_that_serves_the_bytes_itself_is_asked_directly(hub: TestHub) -> None:
    hub.settings.redirect_lfs = False
    loc = Location(resolve_url(hub), margin=10.0)
    got = loc.get(Client(5.0), HEADERS)
    assert got.direct and got.url == resolve_url(hub)


@pytest.mark.parametrize(("rate", "rtt", "want"), [
    (50e6, 0.010, 5 * MiB),  # a near CDN edge: 4.5 MB rounds up to 5 MiB
    (50e6, 0.150, 64 * MiB),  # 150 ms away: 67.5 MB, held to MAX_PIECE (a 4 GiB file)
    (1e9, 0.0003, 4 * MiB),  # loopback: the default stands
    (50e6, None, 4 * MiB),  # no round trip measured yet
])
def test_pieces_are_long_enough_that_a_round_trip_costs_a_tenth(rate: float, rtt: float | None, want: int) -> None:
    assert segments.link_piece(4 * MiB, 4 << 30, rate, rtt) == want


def test_a_piece_sized_from_the_link_leaves_sixty_four_pieces() -> None:
    assert segments.link_piece(4 * MiB, 1 << 30, 50e6, 0.150) == 16 * MiB


def test_after_a_change_the_controller_waits_three_round_trips_before_judging() -> None:
    c = streams.on_round_trip(streams.start(64), rtt=0.15, interval=0.15)
    assert c.settle == 3
    c = streams.on_fan_out(c, rate=50e6)
    skipped = 0
    while c.skip:
        c = streams.on_sample(c, now=1.0, rate=0.0, busy=16, interval=0.15)  # no bytes yet: latency, not loss
        skipped += 1
    assert skipped == 3 and c.target == 16
    for _ in range(streams.WINDOW):
        c = streams.on_sample(c, now=2.0, rate=16 * 50e6 * 0.9, busy=16, interval=0.15)
    assert c.target == 64  # the 16 paid for themselves: slow start goes on
