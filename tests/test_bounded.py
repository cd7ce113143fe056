"""No wait without end, none in silence: a hub that accepts and never answers, one whose answer never ends,
one that rate-limits. Each run goes through `bash setup.sh` and must end with the cause named. The waits are
shortened (gatedfetch.settings): a read timeout of a fraction of a second, a "still waiting" line after 0.1 s."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import FAST, Env, settings_environ

pytestmark = pytest.mark.e2e

SILENT_HUB = settings_environ(dataclasses.replace(FAST, read_timeout=0.3, speak_after=0.1, speak_every=0.2))


def test_a_hub_that_never_answers_the_file_list_ends_with_exit_7_and_speaks_while_waiting(
    env: Env, tokens: dict[str, str]
) -> None:
    env.hub.add_fault("/api/models/fishaudio/openaudio-s1-mini", silent=120, times=None, method="GET")
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"], **SILENT_HUB}, timeout=110)
    assert r.code == 7, r.text
    assert "still waiting for the file list of fishaudio/openaudio-s1-mini" in r.err
    assert "attempt 2 of 3" in r.err
    assert "cannot reach the hub" in r.err and "timed out" in r.err
    assert "Traceback" not in r.text


def test_prepare_on_a_silent_hub_ends(env: Env) -> None:
    env.hub.add_fault("/api/models/", silent=120, times=None)
    r = env.run("--prepare", env=SILENT_HUB, timeout=110)
    assert r.code == 7, r.text
    assert "timed out" in r.err
    assert "prepare: Python ready" not in r.err


def test_an_answer_that_trickles_forever_is_cut_at_the_phase_deadline(env: Env, tokens: dict[str, str]) -> None:
    # A byte every 0.2 s never trips a 0.6 s read timeout: only the deadline of the whole phase (3 x 0.6 + 0.2 s)
    # ends it.
    env.hub.add_fault("/api/models/fishaudio/openaudio-s1-mini", trickle=100, times=None, method="GET")
    waits = settings_environ(dataclasses.replace(FAST, read_timeout=0.6, phase_slack=0.2))
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"], **waits}, timeout=110)
    assert r.code == 7, r.text
    assert "within the 2 s allowed for the checks before the download" in r.err, r.err
    assert "Traceback" not in r.text


def test_rate_limit_is_named_with_the_wait_the_hub_asked_for(env: Env, tokens: dict[str, str]) -> None:
    env.hub.add_fault("/api/models/fishaudio/openaudio-s1-mini", status=429, retry_after=1, times=None)
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 7, r.text
    assert "rate-limited" in r.err
    assert "wait 1 s" in r.err
    assert "check the network" not in r.err
    assert "Traceback" not in r.text


def test_rate_limit_on_the_download_is_named_too(env: Env, tokens: dict[str, str]) -> None:
    env.hub.add_fault("model.pth", status=429, retry_after=1, times=None, server="hub")
    r = env.run("--connections", "1", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 7, r.text
    assert "rate-limited" in r.err and "model.pth" in r.err
    assert "wait 1 s" in r.err
