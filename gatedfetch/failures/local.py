"""Failures found on this machine: a bug (1), usage (2), no token (3), a token refused before any request (4)."""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

from ..places import PROJECT_DIR
from .kinds import (
    ISSUES_HINT,
    TOKENS_PAGE,
    NoToken,
    TokenRejected,
    Unexpected,
    UsageError,
)

# --- 1: unexpected --------------------------------------------------------------------------


def unexpected(exc: BaseException, debug: bool = False) -> Unexpected:
    hint = "report it with the traceback above (tokens in it are masked)" if debug else ISSUES_HINT
    return Unexpected(f"unexpected error: {type(exc).__name__}", hint)


# --- 2: usage -------------------------------------------------------------------------------


def usage(problem: str, fix: str = "run `bash setup.sh --help` for every flag") -> UsageError:
    return UsageError(problem, fix)


def missing_module(python: str, module: str | None, requirements: str) -> Unexpected:
    return Unexpected(
        f"{python} lacks the module {module}",
        f"run with the project's .venv/bin/python (`bash setup.sh --check` builds it), "
        f"or `{python} -m pip install -r {requirements}`",
    )


def env_flag_not_regular(given: str, kind: str) -> UsageError:
    return UsageError(
        f"--env-file {given} is {kind}, not a regular file",
        "give a regular file holding HF_TOKEN=hf_... (a pipe or device is never read: it could block or never end); "
        "to pipe a token in, use --token-stdin",
    )


# --- 3: no token ----------------------------------------------------------------------------


def shell_path(path: str | Path) -> str:
    """A path as one shell word, absolute: a fix command must work pasted anywhere, spaces and all."""
    return shlex.quote(os.path.abspath(path))


def file_type(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISDIR: "a directory", stat.S_ISCHR: "a character device"}
    return next((name for test, name in kinds.items() if test(mode)), "a special file (a device or socket)")


def no_token(env_file: str, no_tty: bool = True) -> NoToken:
    dotenv = shell_path(env_file)
    how = (
        "do one of these, then run `bash setup.sh` again:\n"
        "  hf auth login                (menu: 'Paste an access token'; older: huggingface-cli login)\n"
        f"  export HF_TOKEN=hf_...       (a read token from {TOKENS_PAGE})\n"
        f"  cp {shell_path(PROJECT_DIR / '.env.example')} {dotenv}\n"
        f"                               (then put HF_TOKEN=hf_... in it and `chmod 600 {dotenv}`)"
    )
    why = "no Hugging Face token found (looked at --token-stdin, HF_TOKEN, " + env_file + ", the stored login)"
    if no_tty:
        why += "; not interactive (no terminal, or CI is set), so not prompting"
    return NoToken(why, how)


def env_file_unreadable(env_file: str, why: str, reason: str) -> NoToken:
    """The .env exists but was not read (`reason`: "type", "size" or "os") and no other source had a token."""
    dotenv = shell_path(env_file)
    fix = {
        "type": f"move it away (`mv {dotenv} {shell_path(env_file + '.old')}`), then `cp "
        f"{shell_path(PROJECT_DIR / '.env.example')} {dotenv} && chmod 600 {dotenv}` and put HF_TOKEN=hf_... in it",
        "size": f"a .env holds a few lines: check that {dotenv} is the right file, or name a small one (--env-file)",
        "os": f"check it with `ls -l {dotenv}`; if it is yours: `chmod 600 {dotenv}`",
    }[reason]
    return NoToken(
        f"{env_file} {why}: it was not read, and no other source gave a token",
        fix + "; or give the token another way: `hf auth login`, or `export HF_TOKEN=hf_...`",
        reason=reason,
    )


def empty_stdin() -> NoToken:
    return NoToken(
        "--token-stdin was given but standard input held no token",
        "pipe the token in, e.g. `op read op://vault/hf/token | bash setup.sh --token-stdin`",
    )


# --- 4: token rejected ----------------------------------------------------------------------


def token_malformed(source: str, problem: str) -> TokenRejected:
    return TokenRejected(
        f"the token from {source} is malformed: {problem}",
        f"copy the token again from {TOKENS_PAGE} (only the hf_... value, nothing around it)",
    )


def env_file_utf16(env_file: str, encoding: str) -> TokenRejected:
    dotenv = shell_path(env_file)
    fresh = shell_path(env_file + ".utf8")
    return TokenRejected(
        f"{env_file} is saved as {encoding} (as some Windows editors and PowerShell's `>` do), not UTF-8: "
        "its HF_TOKEN cannot be read",
        f"re-save it as UTF-8: `iconv -f {encoding} -t UTF-8 {dotenv} > {fresh} && mv {fresh} {dotenv} "
        f"&& chmod 600 {dotenv}` (or in the editor: save with the encoding UTF-8)",
        encoding=encoding,
    )


def env_token_line(env_file: str, line: int, problem: str) -> TokenRejected:
    """The HF_TOKEN line of a .env holds bytes no token has (`problem` says which and where, never the value)."""
    return TokenRejected(
        f"{env_file}: line {line}, the HF_TOKEN line, {problem}",
        f"open {shell_path(env_file)} in an editor, write line {line} again as HF_TOKEN=hf_... "
        f"(copy the token from {TOKENS_PAGE}) and save it as UTF-8",
        line=line,
    )


def token_placeholder(source: str, what: str) -> TokenRejected:
    return TokenRejected(
        f"the token from {source} is a placeholder ({what}), not a real token",
        f"create a read token at {TOKENS_PAGE} and put its value there",
    )


def token_org_key(source: str) -> TokenRejected:
    return TokenRejected(
        f"the token from {source} is an organisation API key (api_org_...); those no longer work",
        f"create a user access token (read) at {TOKENS_PAGE}",
    )


def token_invalid(source: str, masked: str, switch_hint: str = "") -> TokenRejected:
    fix = f"the token may be expired or revoked: create a new read token at {TOKENS_PAGE}"
    if switch_hint:
        fix += f"; {switch_hint}"
    return TokenRejected(f"the Hub rejected the token {masked} from {source} (invalid credentials)", fix)


