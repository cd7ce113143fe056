"""Each refusal a user can meet before the download, in-process (the helper as setup.sh starts it, against the local
hub): the cause named, the next step given, the right exit code, no byte fetched. The end-to-end tier keeps one run
of `bash setup.sh` per exit code (tests/test_setup.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import MODEL, Main, Result

Run = Callable[..., Result]


@pytest.fixture
def as_user(main: Main, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Run the helper with `token` in HF_TOKEN, into a fresh folder."""
    out = tmp_path_factory.mktemp("out")

    def run(token: str, *args: str) -> Result:
        monkeypatch.setenv("HF_TOKEN", token)
        return main("--local-dir", str(out), *args)

    return run


def no_download(main: Main) -> bool:
    return not [q for q in main.hub.requests if q.server == "cdn" or "/resolve/" in q.path]


def test_a_placeholder_is_refused_without_asking_the_hub(as_user: Run, main: Main) -> None:
    r = as_user("hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
    assert r.code == 4 and "placeholder" in r.err
    assert main.hub.requests == []


def test_a_pending_request_says_it_awaits_review(as_user: Run, main: Main, tokens: dict[str, str]) -> None:
    r = as_user(tokens["pending"])
    assert r.code == 5
    assert "awaiting a review from the repo authors" in r.err and "accept the licence" not in r.err
    assert no_download(main)


def test_a_rejected_request_says_so(as_user: Run, main: Main, tokens: dict[str, str]) -> None:
    r = as_user(tokens["rejected"])
    assert r.code == 5 and "was rejected" in r.err
    assert no_download(main)


def test_a_fine_grained_token_without_the_gated_permission_names_it(
    as_user: Run, main: Main, tokens: dict[str, str]
) -> None:
    r = as_user(tokens["fine_grained_no_gated"])
    assert r.code == 5
    assert "Read access to contents of all public gated repos you can access" in r.err
    assert "canReadGatedRepos=true" in r.err
    assert no_download(main)  # decided from whoami's answer (the access check is asked beside it)


def test_a_fine_grained_token_with_the_permission_works(as_user: Run, tokens: dict[str, str]) -> None:
    r = as_user(tokens["fine_grained_ok"], "--check")
    assert r.code == 0, r.err
    assert "token role: fineGrained" in r.err


def test_a_missing_revision_is_named(as_user: Run, main: Main, tokens: dict[str, str]) -> None:
    r = as_user(tokens["accepted_read"], "--revision", "v9.9")
    assert r.code == 6 and "v9.9" in r.err
    assert no_download(main)


def test_a_hub_failing_after_retries_names_the_last_cause(as_user: Run, main: Main, tokens: dict[str, str]) -> None:
    main.hub.add_fault("/api/whoami-v2", status=503, times=None)
    r = as_user(tokens["accepted_read"])
    assert r.code == 7 and "503" in r.err
    assert len([q for q in main.hub.requests if "/api/whoami-v2" in q.path]) == 3  # the fault struck each attempt


def test_a_model_that_is_no_repo_id_is_a_usage_error(main: Main) -> None:
    r = main("--model", "not-a-repo-id")
    assert r.code == 2 and "--model" in r.err


def test_help_lists_every_flag_variable_and_exit_code(main: Main) -> None:
    r = main("--help")
    assert r.code == 0
    for flag in ("--local-dir", "--model", "--revision", "--env-file", "--token-stdin", "--check", "--json", "--quiet"):
        assert flag in r.out
    variables = ("HF_TOKEN", "HF_HOME", "HF_TOKEN_PATH", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_XET",
                 "PYTHON ")
    for var in variables:
        assert var in r.out
    for code in range(10):
        assert f"\n  {code}  " in r.out
    assert MODEL in r.out
