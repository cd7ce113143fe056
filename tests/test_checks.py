"""The checks before the download cost one round trip: whoami, the listing and the access check are asked at once
(checked in-process with a client whose answers wait for each other), and judged in order."""

from __future__ import annotations

import io
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from gatedfetch import failures, tokens
from gatedfetch.authorize import Checks
from gatedfetch.hub_client import HubClient, Identity, Snapshot
from gatedfetch.report import Reporter

SNAP = Snapshot("o/m", "main", "c" * 40, True, [], [])


class Rendezvous:
    """A client whose three answers each wait until all three were asked: asked one after another, they would
    time out; asked at once, they all come back."""

    def __init__(self, whoami_fails: bool = False) -> None:
        self.barrier = threading.Barrier(3, timeout=5)
        self.whoami_fails = whoami_fails
        self.endpoint = "https://hub.example"

    def whoami(self, hint: str = "") -> Identity:
        self.barrier.wait()
        if self.whoami_fails:
            raise failures.token_invalid("HF_TOKEN from the environment", "hf_****abcd", hint)
        return Identity("alice", "read", None, ())

    def snapshot(self, repo: str, revision: str) -> Snapshot:
        self.barrier.wait()
        return SNAP

    def ask_access(self, repo: str) -> BaseException | None:
        self.barrier.wait()
        return failures.gated_pending(repo, "alice", "https://hub.example/o/m")

    def check_access(self, repo: str, snap: Snapshot, who: Any, answer: Future[BaseException | None]) -> list[str]:
        return HubClient.check_access(self, repo, snap, who, answer)  # type: ignore[arg-type]


FOUND = tokens.Found("hf_" + "a" * 34, "HF_TOKEN from the environment", "env", "HF_TOKEN")


def test_the_three_checks_are_asked_at_once_and_judged_in_order() -> None:
    rep = Reporter(err=io.StringIO())
    with Checks(Rendezvous(), FOUND, "o/m", "main") as checks:  # type: ignore[arg-type]
        who, snap = checks.identify(rep)
        assert who is not None and who.name == "alice" and snap is SNAP
        with pytest.raises(failures.AccessDenied) as refused:
            checks.permit(who, snap, rep)
    assert "awaiting" in refused.value.message or "review" in refused.value.message


def test_an_invalid_token_is_the_cause_named_whatever_the_others_said() -> None:
    rep = Reporter(err=io.StringIO())
    with pytest.raises(failures.TokenRejected), Checks(Rendezvous(True), FOUND, "o/m", "main") as checks:  # type: ignore[arg-type]
        checks.identify(rep)
