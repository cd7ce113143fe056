"""What a token looks like, and how it is shown: masked, never whole. Standard library only, so that the
reporter (and `--help`, and scripts/leak_audit.py) can use it before the project's venv exists."""

from __future__ import annotations

import re

# The environment variables that hold a token, in huggingface_hub's order of precedence (setup.sh reads the same,
# in the same order: tests/test_house.py checks).
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{34}")  # a user access token: "hf_" and 34 letters and digits

# The password of a URL's user info (HF_ENDPOINT=https://user:password@mirror): shown as ****.
URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):([^/\s@]+)@")


def mask(token: str) -> str:
    """`hf_****abcd`: the prefix and the last four characters, never more."""
    if len(token) < 12:
        return "****"
    prefix = token[:3] if token.startswith("hf_") else ""
    return f"{prefix}****{token[-4:]}"


def redact(text: str, known: tuple[str, ...] | list[str] = ()) -> str:
    """`text` with URL passwords, token-shaped strings and each of the `known` secrets masked."""
    text = URL_PASSWORD.sub(r"\1:****@", text)
    for secret in known:
        text = text.replace(secret, mask(secret))
    return TOKEN_SHAPE.sub(lambda m: mask(m.group(0)), text)


class Redactor:
    """What one run must never print: made at the entry point, told each token as it is found (whatever its
    shape, so a debug traceback masks it too), and applied to every line and document the run writes."""

    def __init__(self) -> None:
        self.known: list[str] = []

    def learn(self, token: str) -> None:
        if token and token not in self.known:
            self.known.append(token)

    def __call__(self, text: str) -> str:
        return redact(text, self.known)
