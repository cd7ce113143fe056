"""Token sources, cleaning, diagnosis and masking.

One ordered chain (first non-empty wins), as huggingface_hub's own `get_token()` but with the
project's extra sources and a name for each:
  1. standard input (`--token-stdin`, or the value setup.sh piped from the environment)
  2. HF_TOKEN / HUGGING_FACE_HUB_TOKEN in the environment
  3. HF_TOKEN in a .env file (parsed with python-dotenv, never executed)
  4. the stored login of `hf auth login` (huggingface_hub's HF_TOKEN_PATH)
Nothing here prints: problems are raised as failures, remarks are returned as warnings.
"""

from __future__ import annotations

import io
import logging
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from . import failures

TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{34}")
_QUOTES = "'\"`"
_PLACEHOLDER_WORDS = ("your", "token_here", "tokenhere", "changeme", "replace", "insert", "paste", "example")

ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@dataclass(frozen=True)
class Found:
    token: str
    source: str  # human name, e.g. "HF_TOKEN from the environment"
    kind: str  # "stdin" | "env" | "dotenv" | "stored"


@dataclass
class Resolution:
    found: Found | None
    warnings: list[str] = field(default_factory=list)


# Every token this process found, so a debug traceback can mask them whatever their shape.
SEEN: list[str] = []


# The password of a URL's user info (HF_ENDPOINT=https://user:password@mirror): shown as ****.
URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):([^/\s@]+)@")


def redact(text: str) -> str:
    text = URL_PASSWORD.sub(r"\1:****@", text)
    for secret in SEEN:
        text = text.replace(secret, mask(secret))
    return TOKEN_SHAPE.sub(lambda m: mask(m.group(0)), text)


def mask(token: str) -> str:
    """`hf_****abcd`: the prefix and the last four characters, never more."""
    if len(token) < 12:
        return "****"
    prefix = token[:3] if token.startswith("hf_") else ""
    return f"{prefix}****{token[-4:]}"


def clean(raw: str, source: str, warnings: list[str]) -> str:
    """Strip what a paste adds; refuse what cannot be a token, saying what and where, never the token."""
    token = raw.strip(" \t\r\n")
    if token.lower().startswith("bearer "):
        warnings.append(f"the token from {source} started with 'Bearer ': removed it (give only the hf_... value)")
        token = token[7:].strip(" \t\r\n")
    if not token:
        return ""
    what = placeholder_kind(token)
    if what:
        raise failures.token_placeholder(source, what)
    for pos, ch in enumerate(token, start=1):
        problem = _bad_char(ch)
        if problem:
            raise failures.token_malformed(source, f"{problem} at position {pos} of {len(token)}")
    if token.startswith("api_org_"):
        raise failures.token_org_key(source)
    if not TOKEN_SHAPE.fullmatch(token):
        warnings.append(
            f"the token from {source} does not look like a user access token (hf_ + 34 letters and digits, "
            f"this one has {len(token)} characters); the Hub will judge it"
        )
    return token


def _bad_char(ch: str) -> str:
    if ch in _QUOTES:
        return "a quote"
    if ch.isspace():
        return "a space" if ch == " " else f"a whitespace character (0x{ord(ch):02x})"
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"a control character (0x{ord(ch):02x})"
    if ord(ch) > 0x7E:
        return "a non-ASCII character"
    return ""


def placeholder_kind(token: str) -> str:
    low = token.lower()
    if token.startswith("$"):
        return f"the text {token[:11]!s} instead of the variable's value (quote-free `$HF_TOKEN` in the shell)"
    if low.startswith("<") or low.endswith(">"):
        return "a template placeholder in angle brackets"
    body = low[3:] if low.startswith("hf_") else low
    if body and set(body) <= set("x.*-_"):
        return "a template value like hf_xxx"
    if any(word in low for word in _PLACEHOLDER_WORDS):
        return "a template value like your_token_here"
    return ""


def read_env_file(path: Path, warnings: list[str]) -> str | None:
    """HF_TOKEN from a .env file, parsed (never sourced). Parse problems name lines, never values."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        warnings.append(f"cannot read {path}: {exc.strerror}")
        return None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:200]:
        raise failures.token_malformed(
            str(path), "the file is UTF-16 (saved by some Windows editors); save it as UTF-8"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise failures.token_malformed(
            str(path), f"the file is not UTF-8 (byte {exc.start + 1} cannot be decoded); save it as UTF-8"
        ) from None
    values = _parse_dotenv(text, path, warnings)
    for key in ENV_VARS:
        value = values.get(key)
        if value:
            return value
    return None


class _LineWarnings(logging.Handler):
    """python-dotenv logs 'could not parse statement starting at line N'; keep the line, drop nothing else."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.args and isinstance(record.args, tuple):
            self.lines.append(str(record.args[0]))


def _parse_dotenv(text: str, path: Path, warnings: list[str]) -> dict[str, str | None]:
    dotenv_logger = logging.getLogger("dotenv.main")
    handler = _LineWarnings()
    dotenv_logger.addHandler(handler)
    propagate = dotenv_logger.propagate
    dotenv_logger.propagate = False
    try:
        values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    finally:
        dotenv_logger.removeHandler(handler)
        dotenv_logger.propagate = propagate
    for line in handler.lines:
        warnings.append(f"{path}: line {line} could not be parsed and was skipped")
    return dict(values)


def stored_token_path() -> Path:
    """Where `hf auth login` keeps the token: HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token."""
    from huggingface_hub import constants

    return Path(constants.HF_TOKEN_PATH)


def read_stored(path: Path, warnings: list[str]) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        warnings.append(f"cannot read the stored login {path}: {exc.strerror}")
        return None
    if _others_can_read(path):
        warnings.append(f"the stored login {path} is readable by other users: run `chmod 600 {path}`")
    return text


def _others_can_read(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def resolve(
    stdin_value: str | None,
    stdin_source: str,
    environ: Mapping[str, str],
    env_file: Path,
    stdin_kind: str = "stdin",
) -> Resolution:
    """Walk the chain; return the first non-empty token (cleaned) and every warning met on the way.

    Later sources are still read to tell the user when the winner shadows a different token.
    """
    res = Resolution(found=None)
    candidates: list[tuple[str, str, str | None]] = []
    if stdin_value is not None:
        # setup.sh pipes a token it found in the environment: that is still the "env" source.
        candidates.append((stdin_kind, stdin_source, stdin_value))
    for var in ENV_VARS:
        if environ.get(var):
            candidates.append(("env", f"{var} from the environment", environ[var]))
            break
    candidates.append(("dotenv", f"HF_TOKEN in {env_file}", read_env_file(env_file, res.warnings)))
    stored = stored_token_path()
    candidates.append(("stored", f"the stored login ({stored})", read_stored(stored, res.warnings)))

    for kind, source, raw in candidates:
        if res.found is None:
            if raw is None:
                continue
            token = clean(raw, source, res.warnings)
            if token:
                SEEN.append(token)
                res.found = Found(token=token, source=source, kind=kind)
            continue
        other = (raw or "").strip(" \t\r\n")
        if other and other != res.found.token and not (kind == "env" and res.found.kind in ("stdin", "env")):
            res.warnings.append(_shadow_note(res.found, kind, source))
    return res


def _shadow_note(winner: Found, kind: str, hidden: str) -> str:
    how = {
        "env": "unset HF_TOKEN",
        "dotenv": "unset HF_TOKEN" if winner.kind == "env" else "drop --token-stdin",
        "stored": "unset HF_TOKEN" if winner.kind == "env" else "remove HF_TOKEN from the .env file",
    }.get(kind, "")
    note = f"{winner.source} is used; it hides a different token in {hidden}"
    if how and winner.kind != "stdin":
        note += f" (to use that one: `{how}`)"
    return note


def env_file_warnings(path: Path) -> list[str]:
    """A .env readable by others, tracked by git or not ignored by git gets the exact fix."""
    out: list[str] = []
    if not path.is_file():
        return out
    if _others_can_read(path):
        out.append(f"{path} is readable by other users: run `chmod 600 {path}`")
    out.extend(_git_warnings(path))
    return out


def _git_warnings(path: Path) -> list[str]:
    import subprocess

    folder = path.resolve().parent
    try:
        tracked = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "--error-unmatch", path.name],
            capture_output=True,
            timeout=5,
        )
        if tracked.returncode == 128 and b"not a git repository" in tracked.stderr:
            return []
        if tracked.returncode == 0:
            return [f"{path} is tracked by git: run `git rm --cached {path.name}` and commit, then rotate the token"]
        ignored = subprocess.run(
            ["git", "-C", str(folder), "check-ignore", "-q", path.name], capture_output=True, timeout=5
        )
        if ignored.returncode == 1:
            return [f"{path} is not ignored by git: add the line `{path.name}` to {folder / '.gitignore'}"]
    except (OSError, subprocess.SubprocessError):
        return []
    return []
