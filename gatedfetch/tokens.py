"""Token sources, cleaning, diagnosis and masking.

One ordered chain (first non-empty wins), as huggingface_hub's own `get_token()` but with the
project's extra sources and a name for each:
  1. standard input (`--token-stdin`, or the value setup.sh piped from the environment)
  2. HF_TOKEN / HUGGING_FACE_HUB_TOKEN in the environment
  3. HF_TOKEN in a .env file (parsed with python-dotenv, never executed; only a regular file of at most
     1 MiB, read without ever blocking)
  4. the stored login of `hf auth login` (huggingface_hub's HF_TOKEN_PATH)
Nothing here prints: problems are raised as failures, remarks are returned as warnings.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import re
import shlex
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from . import failures
from .secret import TOKEN_SHAPE, TOKEN_VARIABLES

_QUOTES = "'\"`"
_PLACEHOLDER_WORDS = ("your", "token_here", "tokenhere", "changeme", "replace", "insert", "paste", "example")

# A .env holds a few lines; a bigger file is the wrong one (a log, /dev/zero through a link): read at most this + 1.
ENV_FILE_LIMIT = 1024 * 1024
_TOKEN_LINE = re.compile(rb"""\s*(?:export\s+)?['"]?(?:HF_TOKEN|HUGGING_FACE_HUB_TOKEN)['"]?\s*=""")


@dataclass(frozen=True)
class Found:
    token: str
    source: str  # human name, e.g. "HF_TOKEN from the environment"
    kind: str  # "stdin" | "env" | "dotenv" | "stored"
    variable: str = ""  # kind "env": the environment variable it came from (HF_TOKEN or HUGGING_FACE_HUB_TOKEN)


@dataclass
class Resolution:
    found: Found | None
    warnings: list[str] = field(default_factory=list)
    env_unreadable: Unreadable | None = None  # the .env exists but was not read, and no source won
    env_holds_token: bool = False  # the .env has a non-empty HF_TOKEN, whichever source won






def read_stdin() -> str:
    """What standard input holds, up to 64 KiB (a token is 37 characters; more is the wrong input)."""
    data = sys.stdin.buffer.read(64 * 1024) if sys.stdin is not None else b""
    return data.decode("utf-8", errors="replace")


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


class Unreadable(Exception):
    """Why an existing file was not read: `why` follows its path ("is a FIFO, not a regular file")."""

    def __init__(self, why: str, reason: str) -> None:
        super().__init__(why)
        self.why = why
        self.reason = reason  # "type", "size" or "os"

    def failure(self, env_file: Path) -> failures.NoToken:
        return failures.env_file_unreadable(str(env_file), self.why, self.reason)


def read_regular(path: Path, limit: int = ENV_FILE_LIMIT) -> bytes | None:
    """The bytes of a regular file (symlinks followed) of at most `limit` bytes; None when there is none.

    Never blocks, never reads without end: stat refuses a FIFO, device or directory before any open
    (a device is never opened); the open is non-blocking and fstat checks the opened file again,
    so one swapped in between is refused too. At most `limit` + 1 bytes are read.
    """
    try:
        _refuse_odd(os.stat(path).st_mode, path)
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY), "rb") as f:
            _refuse_odd(os.fstat(f.fileno()).st_mode, path)
            data = f.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror})", "os") from None
    if len(data) > limit:
        raise Unreadable(f"is larger than {limit / 2**20:g} MiB", "size")
    return data


def _refuse_odd(mode: int, path: Path) -> None:
    if not stat.S_ISREG(mode):
        link = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
        raise Unreadable(f"is {failures.file_type(mode)}{link}, not a regular file", "type")


def read_env_file(path: Path, warnings: list[str]) -> str | None:
    """HF_TOKEN from a .env file, parsed (never sourced). Problems name lines and bytes, never values.

    None when there is no such file; `Unreadable` when it is not a regular file up to 1 MiB or cannot
    be read; a TokenRejected failure when it is UTF-16 or its HF_TOKEN line holds bytes no token has.
    """
    data = read_regular(path)
    if data is None:
        return None
    values = _parse_dotenv(_decode_env(data, path, warnings), path, warnings)
    for key in TOKEN_VARIABLES:
        value = values.get(key)
        if value:
            return value
    return None


def _decode_env(data: bytes, path: Path, warnings: list[str]) -> str:
    """The text of a .env. UTF-16 is refused by name. A line that is not UTF-8 or holds a NUL byte is
    skipped with a warning naming it; when it is the HF_TOKEN line, that is the failure, said exactly."""
    encoding = _utf16(data)
    if encoding:
        raise failures.env_file_utf16(str(path), encoding)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    lines: list[str] = []
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        problem = _byte_problem(line)
        if not problem:
            lines.append(line.decode("utf-8"))
        elif _TOKEN_LINE.match(line):
            raise failures.env_token_line(str(path), number, problem)
        else:
            warnings.append(f"{path}: line {number} {problem}; skipped it (only the HF_TOKEN line matters)")
            lines.append("\n")
    return "".join(lines)


def _byte_problem(line: bytes) -> str:
    """What in a line no text file should hold, and where (a byte position, never the content)."""
    nul = line.find(b"\x00")
    if nul >= 0:
        return f"holds a NUL byte (0x00) at byte {nul + 1} of the line"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"holds a byte that is not UTF-8 (0x{line[exc.start]:02x} at byte {exc.start + 1} of the line)"
    return ""


def _utf16(data: bytes) -> str:
    """"UTF-16" for a UTF-16 byte-order mark, "UTF-16LE"/"UTF-16BE" for text with every other byte NUL
    (at least 3 pairs in 4 in the first 512 bytes), "" for anything else (a stray NUL is not UTF-16)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    pairs = min(len(data), 512) // 2
    if pairs < 2:
        return ""
    first, second = data[0 : 2 * pairs : 2], data[1 : 2 * pairs : 2]
    for zeros, other, name in ((second, first, "UTF-16LE"), (first, second, "UTF-16BE")):
        if zeros.count(0) * 4 >= pairs * 3 and other.count(0) * 4 <= pairs:
            return name
    return ""


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
        data = read_regular(path)
    except Unreadable as exc:
        warnings.append(f"the stored login {path} {exc.why}: not read")
        return None
    if data is None:
        return None
    if _others_can_read(path):
        warnings.append(
            f"the stored login {path} is readable by other users: run `chmod 600 {failures.shell_path(path)}`"
        )
    return data.decode("utf-8", errors="replace")


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
    stdin_variable: str = "",
) -> Resolution:
    """Walk the chain; return the first non-empty token (cleaned) and every warning met on the way.

    Later sources are still read to tell the user when the winner shadows a different token, and
    whether the .env holds a token (its file-mode and git warnings matter even when it lost). A .env
    that cannot be read, or whose content is broken, costs only a warning once a source before it won.
    """
    res = Resolution(found=None)
    sources: list[tuple[str, str, str, Callable[[], str | None]]] = []
    if stdin_value is not None:
        # setup.sh pipes a token it found in the environment (and takes it out of ours): still the "env" source.
        sources.append((stdin_kind, stdin_variable, stdin_source, lambda: stdin_value))
    var = next((name for name in TOKEN_VARIABLES if environ.get(name)), "")
    if var:
        value = environ[var]
        sources.append(("env", var, f"{var} from the environment", lambda: value))
    sources.append(("dotenv", "", f"HF_TOKEN in {env_file}", lambda: _read_dotenv(env_file, res)))
    stored = stored_token_path()
    sources.append(("stored", "", f"the stored login ({stored})", lambda: read_stored(stored, res.warnings)))

    for kind, variable, source, read in sources:
        raw = read()
        if res.found is None:
            if raw is None:
                continue
            token = clean(raw, source, res.warnings)
            if token:
                res.found = Found(token=token, source=source, kind=kind, variable=variable)
            continue
        other = (raw or "").strip(" \t\r\n")
        if other and other != res.found.token:
            res.warnings.append(_shadow_note(res.found, kind, source))
    if res.found is not None and res.env_unreadable is not None:
        res.warnings.append(f"{env_file} {res.env_unreadable.why}: not read ({res.found.source} is used)")
        res.env_unreadable = None
    return res


def _read_dotenv(path: Path, res: Resolution) -> str | None:
    """The .env's candidate: its failures count only when no source before it won."""
    try:
        raw = read_env_file(path, res.warnings)
    except Unreadable as exc:
        res.env_unreadable = exc
        return None
    except failures.Failure as problem:
        if res.found is None:
            raise
        res.warnings.append(f"{problem.message}; not used ({res.found.source} is used)")
        return None
    res.env_holds_token = bool((raw or "").strip())
    return raw


def _shadow_note(winner: Found, kind: str, hidden: str) -> str:
    """"X is used; it hides a different token in Y", with the command that makes Y the one used."""
    if winner.kind == "env":
        how = f"unset {winner.variable or 'HF_TOKEN'}"
    elif winner.kind == "dotenv" and kind == "stored":
        how = "remove HF_TOKEN from the .env file"
    else:  # standard input, or the typed token, wins by the user's own choice this run
        how = ""
    note = f"{winner.source} is used; it hides a different token in {hidden}"
    return note + (f" (to use that one: `{how}`)" if how else "")


def env_file_warnings(path: Path) -> list[str]:
    """A .env readable by others, tracked by git or not ignored by git gets the exact fix."""
    out: list[str] = []
    if not path.is_file():
        return out
    if _others_can_read(path):
        out.append(f"{path} is readable by other users: run `chmod 600 {failures.shell_path(path)}`")
    out.extend(_git_warnings(path))
    return out


def _git_warnings(path: Path) -> list[str]:
    import subprocess

    folder = path.absolute().parent
    try:
        tracked = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "--error-unmatch", path.name],
            capture_output=True,
            timeout=5,
        )
        if tracked.returncode == 128 and b"not a git repository" in tracked.stderr:
            return []
        if tracked.returncode == 0:
            command = f"git -C {failures.shell_path(folder)} rm --cached {shlex.quote(path.name)}"
            return [f"{path} is tracked by git: run `{command}` and commit, then rotate the token"]
        ignored = subprocess.run(
            ["git", "-C", str(folder), "check-ignore", "-q", path.name], capture_output=True, timeout=5
        )
        if ignored.returncode == 1:
            return [f"{path} is not ignored by git: add the line `{path.name}` to {folder / '.gitignore'}"]
    except (OSError, subprocess.SubprocessError) as exc:  # no git, or it hung: the warnings are a courtesy
        if os.environ.get(failures.DEBUG_VARIABLE):
            return [f"could not ask git whether {path} is tracked or ignored: {exc}"]
        return []
    return []
