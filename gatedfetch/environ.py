"""The environment variables the product reads, its own and huggingface_hub's, checked before anything
imports huggingface_hub (which parses some of them at import, and fails there with a bare ValueError).

`check(environ)` returns the values as they will be used (a URL with the whitespace of a pasted secret
trimmed) or raises a usage failure naming the variable and the form it accepts. `apply()` checks
`os.environ` and writes the trimmed values back, so huggingface_hub reads the same. Standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from urllib.parse import urlsplit

from . import failures

# huggingface_hub reads these with int() at import; 0 (or empty) means its default, and here too.
SECONDS = ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT")
MAX_SECONDS = 86400  # a day: more is never meant, and a huge value overflows a socket's timeout
# huggingface_hub's switches: it takes 1/ON/YES/TRUE as on and anything else as off, so a typo is silently off.
SWITCHES = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_DISABLE_XET",
    "HF_HUB_DISABLE_TELEMETRY",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
    "HF_DEBUG",
)
SWITCH_VALUES = ("1", "0", "true", "false", "yes", "no", "on", "off")
ENDPOINT = "HF_ENDPOINT"
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_WHOLE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses


def _seconds(name: str, value: str) -> str:
    text = value.strip()
    if not text:
        return ""  # unset (huggingface_hub's int("") would fail)
    if not _WHOLE.fullmatch(text) or int(text) > MAX_SECONDS:
        raise failures.usage(
            f"{name}={value!r} is not a whole number of seconds",
            f"set {name} to a whole number from 0 (the default) to {MAX_SECONDS}, e.g. {name}=30, or unset it",
        )
    return text


def _switch(name: str, value: str) -> str:
    text = value.strip()
    if text and text.lower() not in SWITCH_VALUES:
        raise failures.usage(
            f"{name}={value!r} is neither on nor off",
            f"set {name}=1 to turn it on, or unset it (0, false, no and off also mean off)",
        )
    return text


def url_problem(value: str, schemes: tuple[str, ...]) -> str:
    """What keeps `value` from being a URL with one of `schemes`, a host and a valid port ("" if nothing)."""
    parts = urlsplit(value)
    if parts.scheme.lower() not in schemes:
        return f"it does not start with {' or '.join(s + '://' for s in schemes)}"
    if not parts.hostname:
        return "it names no host"
    if any(c.isspace() for c in value):
        return "it holds a space or a line break"
    try:
        _ = parts.port  # urllib checks the range only when asked
    except ValueError:
        return "its port is not a number from 1 to 65535"
    return ""


def _endpoint(value: str) -> str:
    text = value.strip()  # a pasted CI secret often ends in a newline
    if not text:
        return ""  # unset: an empty secret in CI means the default hub
    problem = url_problem(text, ("http", "https"))
    if problem:
        raise failures.usage(
            f"{ENDPOINT}={value!r} is not an http(s) URL: {problem}",
            f"set {ENDPOINT} to the hub's address, e.g. {ENDPOINT}=https://huggingface.co, or unset it",
        )
    return text


def _proxy(name: str, value: str) -> str:
    text = value.strip()
    if not text:
        return text
    problem = url_problem(text if "://" in text else f"http://{text}", PROXY_SCHEMES)
    if problem:
        raise failures.usage(
            f"{name} is not a proxy URL: {problem}",
            f"set {name} to the proxy's address, e.g. {name}=http://proxy.example:3128, or unset it",
        )
    return text


def check(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that are set, as they will be used ("": as if unset); a usage failure for the first one
    that is not valid."""
    out: dict[str, str] = {}
    for name in SECONDS:
        if name in environ:
            out[name] = _seconds(name, environ[name])
    for name in SWITCHES:
        if name in environ:
            out[name] = _switch(name, environ[name])
    if ENDPOINT in environ:
        out[ENDPOINT] = _endpoint(environ[ENDPOINT])
    for name in PROXIES:
        if name in environ:
            out[name] = _proxy(name, environ[name])
    return out


def apply(environ: MutableMapping[str, str] | None = None) -> None:
    """Check the environment (os.environ by default) and write the trimmed values back into it."""
    target = os.environ if environ is None else environ
    for name, value in check(target).items():
        if value or name in SWITCHES or name in PROXIES:
            target[name] = value
        else:
            del target[name]
