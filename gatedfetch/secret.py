"""What a token looks like, and how it is shown: masked, never whole. Standard library only, so that the
reporter (and `--help`, and scripts/leak_audit.py) can use it before the project's venv exists."""

from __future__ import annotations

import re

TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{34}")  # a user access token: "hf_" and 34 letters and digits

# Every token this process found, so a debug traceback can mask them whatever their shape.
SEEN: list[str] = []

# The password of a URL's user info (HF_ENDPOINT=https://user:password@mirror): shown as ****.
URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):([^/\s@]+)@")


def mask(token: str) -> str:
    """`hf_****abcd`: the prefix and the last four characters, never more."""
    if len(token) < 12:
        return "****"
    prefix = token[:3] if token.startswith("hf_") else ""
    return f"{prefix}****{token[-4:]}"


def redact(text: str) -> str:
    text = URL_PASSWORD.sub(r"\1:****@", text)
    for secret in SEEN:
        text = text.replace(secret, mask(secret))
    return TOKEN_SHAPE.sub(lambda m: mask(m.group(0)), text)
