"""Odd values in the environment and odd answers in front of the Hub, tested in-process (fast): every
variable the product reads is checked before huggingface_hub is imported, and every HTTP status that is not
the Hub's own answer has a failure class with the status and the host."""

from __future__ import annotations

import pytest

from gatedfetch import environ, failures
from gatedfetch.cli import check_endpoint, is_the_hub, main
from gatedfetch.hub_client import HubClient
from gatedfetch.options import parse
from gatedfetch.report import Reporter
from gatedfetch.settings import Settings
from tests.conftest import Env
from tests.jobs_hub import TestHub


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HF_HUB_ETAG_TIMEOUT", "abc"),
        ("HF_HUB_ETAG_TIMEOUT", "1.5"),
        ("HF_HUB_ETAG_TIMEOUT", "nan"),
        ("HF_HUB_ETAG_TIMEOUT", "1e12"),
        ("HF_HUB_ETAG_TIMEOUT", "999999999999"),
        ("HF_HUB_ETAG_TIMEOUT", "-5"),
        ("HF_HUB_DOWNLOAD_TIMEOUT", "60.0"),
        ("HF_HUB_DOWNLOAD_TIMEOUT", "²"),
        ("HF_ENDPOINT", "https://huggingface.co:99999"),
        ("HF_ENDPOINT", "huggingface.co"),
        ("HF_ENDPOINT", "https://hugging face.co"),
        ("HF_HUB_OFFLINE", "ture"),
        ("HTTPS_PROXY", "http://proxy:99999"),
        ("ALL_PROXY", "ftp://proxy:21"),
    ],
)
def test_an_odd_value_is_a_usage_error_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(failures.UsageError) as caught:
        environ.check({name: value})
    assert caught.value.exit_code == 2
    assert name in caught.value.message
    assert name in caught.value.fix  # the accepted form, with the variable to set


def test_a_proxy_value_is_never_echoed() -> None:
    with pytest.raises(failures.UsageError) as caught:
        environ.check({"HTTPS_PROXY": "http://user:s3cret@proxy:99999"})
    assert "s3cret" not in caught.value.message + caught.value.fix


def test_a_pasted_endpoint_is_trimmed_and_empty_values_mean_unset() -> None:
    env = {
        "HF_ENDPOINT": " https://hub.example/ \n",
        "HF_HUB_ETAG_TIMEOUT": " 7 ",
        "HF_HUB_DOWNLOAD_TIMEOUT": "",
        "HF_HUB_OFFLINE": "0",
    }
    environ.apply(env)
    assert env == {"HF_ENDPOINT": "https://hub.example/", "HF_HUB_ETAG_TIMEOUT": "7", "HF_HUB_OFFLINE": "0"}
    environ.apply(blank := {"HF_ENDPOINT": "  \n"})
    assert blank == {}


def test_etag_timeout_zero_is_the_default_as_in_huggingface_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "0")
    environ.apply()
    assert Settings.from_environ({"HF_HUB_ETAG_TIMEOUT": "0"}).read_timeout == Settings().read_timeout == 30.0
    assert Settings.from_environ({"HF_HUB_ETAG_TIMEOUT": "4"}).read_timeout == 4.0


@pytest.mark.parametrize("value", ["²", "٣", "1" * 5000])
def test_connections_takes_ascii_digits_only(value: str) -> None:
    with pytest.raises(failures.UsageError) as caught:
        parse(["--connections", value])
    assert "--connections" in caught.value.message


def test_main_reports_a_bad_variable_as_usage_before_importing_the_hub(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "nan")
    assert main(["--check"]) == 2
    err = capfd.readouterr().err
    assert "HF_HUB_ETAG_TIMEOUT='nan' is not a whole number of seconds" in err
    assert "unexpected" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "endpoint", ["https://HuggingFace.co", "https://huggingface.co:443", "https://huggingface.co.", "https://huggingface.co/"]
)
def test_the_hub_however_spelt_gets_no_warning(endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert is_the_hub(endpoint)
    check_endpoint(endpoint, False, Reporter(quiet=False, json_mode=False))
    assert "not to huggingface.co" not in capsys.readouterr().err


@pytest.mark.parametrize("endpoint", ["http://huggingface.co", "https://huggingface.co:8443", "https://hf.example"])
def test_another_endpoint_is_not_the_hub(endpoint: str) -> None:
    assert not is_the_hub(endpoint)


# -- answers from something in front of the Hub ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (400, 7, "HTTP 400"),
        (403, 7, "firewall or proxy"),
        (407, 7, "HTTP 407 Proxy Authentication Required"),
        (431, 4, "HTTP 431"),
        (451, 7, "HTTP 451"),
    ],
)
def test_whoami_refused_in_front_of_the_hub(
    hub: TestHub, tokens: dict[str, str], status: int, code: int, words: str
) -> None:
    hub.add_fault("/api/whoami-v2", status=status, foreign=True)
    client = HubClient(hub.url, tokens["accepted_read"], "HF_TOKEN")
    with pytest.raises(failures.Failure) as caught:
        client.whoami()
    assert [r.status for r in hub.requests if "whoami" in r.path] == [status]  # the fault struck
    failure = caught.value
    assert failure.exit_code == code
    assert words in failure.message
    assert hub.url.split("://")[1] in failure.message  # the host
    assert "bash setup.sh" in failure.fix


def test_a_407_names_the_proxy_variable_that_is_set(
    hub: TestHub, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    hub.add_fault("/api/whoami-v2", status=407, foreign=True)
    with pytest.raises(failures.HubUnreachable) as caught:
        HubClient(hub.url, tokens["accepted_read"]).whoami()
    assert "export http_proxy=http://USER:PASSWORD@PROXY:PORT" in caught.value.fix


def test_a_403_from_a_firewall_on_the_listing_is_not_a_licence_question(hub: TestHub, tokens: dict[str, str]) -> None:
    hub.add_fault("/api/models/", status=403, foreign=True)
    client = HubClient(hub.url, tokens["accepted_read"])
    with pytest.raises(failures.Failure) as caught:
        client.snapshot("fishaudio/openaudio-s1-mini", "main")
    assert any(r.status == 403 for r in hub.requests)
    assert caught.value.exit_code == 7
    assert "HTTP 403" in caught.value.message


def test_setup_sh_says_407_with_exit_7_and_no_traceback(env: Env, tokens: dict[str, str]) -> None:
    env.hub.add_fault("/api/whoami-v2", status=407, foreign=True)
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 7, r.err
    assert "HTTP 407" in r.err and "HTTPS_PROXY" in r.err
    assert "Traceback" not in r.err and "unexpected" not in r.err
    assert any(q.status == 407 for q in env.hub.requests)
