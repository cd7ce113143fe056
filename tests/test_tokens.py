"""Token diagnosis: cleaning, placeholders, bad characters, shapes, .env parsing, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatedfetch import failures, secret, tokens
from tests.conftest import Env

GOOD = "hf_" + "Ab1" * 11 + "Z"  # 34 characters after the prefix


def clean(raw: str) -> tuple[str, list[str]]:
    warnings: list[str] = []
    return tokens.clean(raw, "HF_TOKEN", warnings), warnings


def test_good_token_passes_unchanged() -> None:
    assert clean(GOOD) == (GOOD, [])


@pytest.mark.parametrize("raw", [f"  {GOOD}\n", f"{GOOD}\r\n", f"\t{GOOD} "], ids=["spaces", "crlf", "tab"])
def test_paste_noise_is_stripped(raw: str) -> None:
    assert clean(raw)[0] == GOOD


def test_leading_bearer_is_removed_with_a_note() -> None:
    token, warnings = clean(f"Bearer {GOOD}")
    assert token == GOOD
    assert any("Bearer" in w for w in warnings)


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (f'"{GOOD}"', "a quote at position 1"),
        (f"{GOOD[:10]} {GOOD[10:]}", "a space at position 11"),
        (f"{GOOD[:5]}\x07{GOOD[5:]}", "a control character (0x07) at position 6"),
        (f"{GOOD[:3]}é{GOOD[3:]}", "a non-ASCII character at position 4"),
    ],
    ids=["quote", "space", "control", "non-ascii"],
)
def test_bad_characters_are_named_with_position_never_the_token(raw: str, what: str) -> None:
    with pytest.raises(failures.TokenRejected) as exc:
        clean(raw)
    assert what in exc.value.message
    assert GOOD[5:15] not in exc.value.message + exc.value.fix


@pytest.mark.parametrize(
    "raw",
    ["$HF_TOKEN", "${HF_TOKEN}", "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "hf_xxx", "<your token>", "your_token_here",
     "hf_...", "<HF_TOKEN>"],
)
def test_placeholders_are_named_as_such(raw: str) -> None:
    with pytest.raises(failures.TokenRejected) as exc:
        clean(raw)
    assert "placeholder" in exc.value.message
    assert exc.value.exit_code == 4


def test_dollar_placeholder_names_the_shell_pitfall() -> None:
    with pytest.raises(failures.TokenRejected) as exc:
        clean("$HF_TOKEN")
    assert "instead of the variable's value" in exc.value.message


def test_org_api_key_is_refused_with_the_reason() -> None:
    with pytest.raises(failures.TokenRejected) as exc:
        clean("api_org_" + "a" * 30)
    assert "organisation API key" in exc.value.message
    assert "user access token" in exc.value.fix


def test_unusual_shape_is_warned_and_left_to_the_hub() -> None:
    token, warnings = clean("hf_oauth_" + "a" * 40)
    assert token.startswith("hf_oauth_")
    assert any("does not look like" in w for w in warnings)


def test_mask_shows_prefix_and_last_four_only() -> None:
    assert secret.mask(GOOD) == "hf_****" + GOOD[-4:]
    assert secret.mask("short") == "****"


def test_env_file_with_bom_crlf_export_quotes_and_comments(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"\xef\xbb\xbf# comment\r\nOTHER=1\r\nexport HF_TOKEN=\"" + GOOD.encode() + b"\"  # mine\r\n")
    assert tokens.read_env_file(path, []) == GOOD


def test_utf16_env_file_gets_a_clear_message_without_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(f"HF_TOKEN={GOOD}\n".encode("utf-16"))
    with pytest.raises(failures.TokenRejected) as exc:
        tokens.read_env_file(path, [])
    assert "UTF-16" in exc.value.message
    assert "Ab1" not in exc.value.message


def test_broken_env_lines_warn_by_line_number_never_value(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f"GOOD=1\nthis is 'broken {GOOD}\nHF_TOKEN={GOOD}\n")
    warnings: list[str] = []
    assert tokens.read_env_file(path, warnings) == GOOD
    assert any("line 2" in w for w in warnings)
    assert all(GOOD[4:14] not in w for w in warnings)


def test_placeholder_in_env_file_exits_4_end_to_end(env: Env) -> None:
    env.write_env("HF_TOKEN=${HF_TOKEN}\n")
    r = env.run("--check")
    assert r.code == 4
    assert "placeholder" in r.err and str(env.project / ".env") in r.err


def test_write_token_warns_that_read_is_enough(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_write"]})
    assert r.code == 0, r.err
    assert "a read token is enough" in r.err


def test_empty_token_stdin_exits_3(env: Env) -> None:
    r = env.run("--token-stdin", stdin=b"\n")
    assert r.code == 3
    assert "--token-stdin" in r.err


def test_env_file_tracked_by_git_is_warned(env: Env, tokens: dict[str, str]) -> None:
    import subprocess

    env.write_env(f"HF_TOKEN={tokens['accepted_read']}\n")
    subprocess.run(["git", "init", "-q", str(env.project)], check=True)
    subprocess.run(["git", "-C", str(env.project), "add", "-f", ".env"], check=True)
    r = env.run("--check")
    assert r.code == 0
    assert f"git -C {env.project} rm --cached .env" in r.err


def test_env_file_not_ignored_by_git_is_warned(env: Env, tokens: dict[str, str]) -> None:
    import subprocess

    env.write_env(f"HF_TOKEN={tokens['accepted_read']}\n")
    subprocess.run(["git", "init", "-q", str(env.project)], check=True)
    r = env.run("--check")
    assert r.code == 0
    assert "is not ignored by git" in r.err and ".gitignore" in r.err
