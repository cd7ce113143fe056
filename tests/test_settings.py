"""The waits of the product: one settings object, the defaults a user gets, and the overrides the tests use."""

from __future__ import annotations

import pytest

from gatedfetch import bounded, settings
from gatedfetch.settings import Settings


def test_the_defaults_are_the_products_waits() -> None:
    s = Settings.from_environ({})
    assert (s.read_timeout, s.connect_timeout, s.write_timeout) == (30.0, 10.0, 30.0)
    assert (s.speak_after, s.speak_every) == (5.0, 10.0)
    assert (s.hub_backoff, s.hub_pause_cap) == (0.5, 10.0)
    assert (s.download_timeout, s.backoff_base, s.backoff_cap, s.retry_after_cap) == (30.0, 0.5, 8.0, 30.0)
    assert s.phase_deadline == 100.0  # --prepare ends within 2 minutes
    assert (settings.PHASE_ATTEMPTS, settings.DOWNLOAD_RETRIES) == (3, 5)


def test_every_setting_has_its_variable() -> None:
    assert sorted(settings.ENVIRONMENT) == sorted(vars(Settings()))
    for name, var in settings.ENVIRONMENT.items():
        assert Settings.from_environ({var: "0.25"}) == Settings(**{name: 0.25})


def test_hf_hub_etag_timeout_sets_the_read_timeout_and_the_deadline_follows() -> None:
    s = Settings.from_environ({"HF_HUB_ETAG_TIMEOUT": "6"})
    assert s.read_timeout == 6.0 and s.phase_deadline == 28.0
    assert Settings.from_environ({"HF_HUB_ETAG_TIMEOUT": "6", "GATEDFETCH_READ_TIMEOUT": "0.5"}).read_timeout == 0.5
    assert Settings.from_environ({"HF_HUB_ETAG_TIMEOUT": "0"}).read_timeout == 30.0  # huggingface_hub: 0 = default
    assert Settings.from_environ({"GATEDFETCH_READ_TIMEOUT": "0"}).read_timeout == 0.1  # never no wait at all


@pytest.mark.parametrize("raw", ["", "  ", "soon", "-1", "nan", "inf"])
def test_a_value_that_is_not_a_usable_number_leaves_the_default(raw: str) -> None:
    assert Settings.from_environ({"GATEDFETCH_BACKOFF_CAP": raw, "HF_HUB_ETAG_TIMEOUT": raw}) == Settings()


def test_the_process_reads_them_once_and_a_test_can_replace_them() -> None:
    settings.use(Settings(read_timeout=1.5))
    assert bounded.read_timeout() == 1.5
    settings.use(None)
    assert settings.current() is settings.current()
