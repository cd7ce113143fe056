"""The one interactive path: with a terminal and no token anywhere, ask for one (hidden input), and
save it as the stored login only when the user says yes. Never used without a TTY or under CI."""

from __future__ import annotations

import contextlib
import getpass
import os
import sys


def can_prompt() -> bool:
    return (
        sys.stdin is not None
        and sys.stdin.isatty()
        and sys.stderr is not None
        and sys.stderr.isatty()
        and not os.environ.get("CI")
    )


def ask_token() -> str:
    print(
        "No Hugging Face token found. Paste a read token from https://huggingface.co/settings/tokens "
        "(input is hidden; empty to cancel).",
        file=sys.stderr,
    )
    try:
        return getpass.getpass("token: ", stream=sys.stderr)
    except EOFError:
        return ""


def ask_yes(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (EOFError, OSError):
        return False
    return answer.strip().lower() in ("y", "yes")


def save_login(token: str) -> str:
    """Store the token the way `hf auth login` does (0600 file in a 0700 folder), through huggingface_hub."""
    from huggingface_hub import constants, login

    with contextlib.redirect_stdout(sys.stderr):
        login(token=token, add_to_git_credential=False)
    return constants.HF_TOKEN_PATH
