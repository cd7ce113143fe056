"""Flags and their meaning: the parser, the help text and the parsed options (no third-party imports,
so `--help` works with any python3 before the project's venv exists)."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from . import failures
from .failures import EXIT_MEANINGS
from .places import PROJECT_DIR
from .secret import TOKEN_VARIABLES

DEFAULT_MODEL = "fishaudio/openaudio-s1-mini"
DEFAULT_LOCAL_DIR = PROJECT_DIR / "checkpoints" / "openaudio-s1-mini"
HUB_ENDPOINT = "https://huggingface.co"
# The ceiling of streams at once, across all files (one big file may take them all); also the transfer's default.
# A CDN caps each connection (40-90 MB/s reported for the Hub's, much less from a distant edge): many streams
# fill a link. The count adapts under it (transfer/streams.py): it starts at 16, grows while the rate grows,
# shrinks when the CDN refuses.
DEFAULT_CONNECTIONS = 64
MAX_CONNECTIONS = 64  # hf_xet's own ceiling
CONNECTIONS_VARIABLE = "GATEDFETCH_CONNECTIONS"

ENVIRONMENT_HELP = """\
environment:
  HF_TOKEN               token (also the older HUGGING_FACE_HUB_TOKEN); wins over .env and the stored login
  HF_HOME                huggingface_hub's home; the stored login is $HF_HOME/token, its cache $HF_HOME/hub
  HF_HUB_CACHE           huggingface_hub's cache, if elsewhere: files already there are reused once verified
  HF_TOKEN_PATH          the stored login's file, if elsewhere
  HF_ENDPOINT            the hub or mirror to use (default https://huggingface.co)
  HF_HUB_OFFLINE=1       no network: check the local copy against its manifest only
  HF_HUB_DISABLE_XET=1   accepted; files always come over plain HTTPS here
  GATEDFETCH_CONNECTIONS the same as --connections, the ceiling of streams (the flag wins)
  GATEDFETCH_VENV_WAIT   seconds to wait for another setup.sh building .venv (default 600)
  HF_HUB_ETAG_TIMEOUT    whole seconds to wait for each answer before the download (0 or unset: 30)
  HF_HUB_DOWNLOAD_TIMEOUT whole seconds; read by huggingface_hub, checked here (0 or unset: its default)
  HTTPS_PROXY, ALL_PROXY the proxy to go through (http://[user:pass@]host:port)
  GATEDFETCH_LOCK_WAIT   --also-cache: seconds to wait in all for huggingface_hub's locks (default 90)
  PYTHON                 an interpreter to use instead of the project's .venv (setup.sh)
  GATEDFETCH_DEBUG=1     show a traceback (tokens masked) on an unexpected error
"""


def _exit_help() -> str:
    rows = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_MEANINGS.items())
    return f"exit codes:\n{rows}\n"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise failures.usage(self._suggest(message))

    def _suggest(self, message: str) -> str:
        """argparse's message, with the flag meant when an unknown one is the start or a near miss of one."""
        m = re.match(r"unrecognized arguments: (\S+)", message)
        if not m or not m.group(1).startswith("--"):
            return message
        given = m.group(1).split("=", 1)[0]
        flags = [f for action in self._actions for f in action.option_strings if action.help != argparse.SUPPRESS]
        meant = [f for f in flags if f.startswith(given)] or difflib.get_close_matches(given, flags, n=1)
        return f"{message} (did you mean {' or '.join(meant[:3])}?)" if meant else message


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="bash setup.sh",
        description=(
            "Validate a Hugging Face token, check access to the gated model and download it, "
            "verifying every byte. The token is found in this order: --token-stdin, HF_TOKEN, "
            "a .env file, the stored `hf auth login`."
        ),
        epilog=ENVIRONMENT_HELP + "\n" + _exit_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # `--js` is not `--json`: a flag is given in full or refused, naming the one meant
    )
    p.add_argument("--local-dir", metavar="DIR", help="target folder (default: checkpoints/openaudio-s1-mini)")
    p.add_argument("--model", metavar="REPO", default=DEFAULT_MODEL, help=f"model repo (default: {DEFAULT_MODEL})")
    p.add_argument("--revision", metavar="REV", default="main", help="branch, tag or commit (default: main)")
    p.add_argument("--env-file", metavar="PATH", help="the .env file to read HF_TOKEN from (default: .env here)")
    p.add_argument("--token-stdin", action="store_true", help="read the token from standard input")
    p.add_argument("--check", action="store_true", help="every step but the download; exit 0 if it would succeed")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout (text stays on stderr)")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    p.add_argument(
        "--connections",
        metavar="N",
        help=f"the most download streams at once, across all files (1-{MAX_CONNECTIONS}, default "
        f"{DEFAULT_CONNECTIONS}); the count adapts below it: more while the rate grows, fewer when the CDN refuses "
        "(429, 503) or resets; a big file is fetched in ranged pieces over several of them; 1: one stream per file",
    )
    p.add_argument(
        "--force-local-dir",
        action="store_true",
        help="allow --local-dir to be the filesystem root, your home folder or this project's folder",
    )
    p.add_argument(
        "--reuse-from",
        metavar="DIR",
        action="append",
        default=[],
        help="another folder that may hold the model's files at their repo paths (e.g. another checkout's "
        "checkpoints/openaudio-s1-mini); a file there is used only if its hash is the Hub's; repeatable. "
        "huggingface_hub's cache (HF_HUB_CACHE, HF_HOME/hub) is always looked at",
    )
    p.add_argument(
        "--link",
        action="store_true",
        help="bring files found on this machine in as hard links when on the same filesystem (no copy; the "
        "two names share one file: never edit either in place)",
    )
    p.add_argument(
        "--also-cache",
        action="store_true",
        help="also file the model into huggingface_hub's cache, so that `HF_HUB_OFFLINE=1 hf download` "
        "and hf_hub_download(..., local_files_only=True) find it offline",
    )
    p.add_argument(
        "--allow-insecure-endpoint",
        action="store_true",
        help="allow a plain http:// HF_ENDPOINT that is not on this machine (the token would travel unencrypted)",
    )
    p.add_argument(
        "--prepare",
        action="store_true",
        help="for a machine's first boot (Brev Launchable): build the environment, check what needs no token "
        "(hub reachable, disk space); go on to the full setup if a token is there, else print the next steps; "
        "never asks for input",
    )
    p.add_argument(
        "--demo",
        nargs="?",
        const="granted",
        choices=list(DEMO_SCENARIOS),
        metavar="SCENARIO",
        help="try the whole flow with no token and no network, against the project's own local hub, "
        f"into a temporary folder; SCENARIO: {', '.join(DEMO_SCENARIOS)} (default: granted)",
    )
    # Set by setup.sh when it pipes the token it found in the environment: the variable it came from.
    p.add_argument("--token-from", choices=TOKEN_VARIABLES, help=argparse.SUPPRESS)
    return p


# --demo scenarios, each played by one of the local hub's tokens (gatedfetch/localhub/world.py maps them)
DEMO_SCENARIOS = ("granted", "pending", "not-accepted", "rejected", "invalid-token", "fine-grained")


@dataclass
class Options:
    local_dir: Path
    model: str
    revision: str
    env_file: Path
    token_stdin: bool  # the token comes on standard input (from the user, or piped by setup.sh)
    token_from: str  # the variable setup.sh piped it from ("" when the user gave --token-stdin)
    check: bool
    json: bool
    quiet: bool
    allow_insecure: bool
    prepare: bool = False
    demo: str | None = None
    connections: int = DEFAULT_CONNECTIONS
    force_local_dir: bool = False
    reuse_from: tuple[Path, ...] = ()
    link: bool = False
    also_cache: bool = False


def _connections(flag: str | None) -> int:
    """--connections, else $GATEDFETCH_CONNECTIONS, else the default; a usage error when not 1..MAX."""
    name = "--connections" if flag is not None else CONNECTIONS_VARIABLE
    value = flag if flag is not None else os.environ.get(CONNECTIONS_VARIABLE)
    if value is None or (flag is None and not value.strip()):
        return DEFAULT_CONNECTIONS
    text = value.strip()
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_CONNECTIONS:
        raise failures.usage(f"{name} {value!r}: give a whole number from 1 to {MAX_CONNECTIONS}")
    return int(text)


# git check-ref-format's rules, enough to refuse locally what no hub can resolve (a commit hash passes).
_BAD_REVISION = re.compile(r"(^[/.-])|(\.\.)|(@\{)|([\x00-\x20\x7f~^:?*\[\\])|(/$)|(\.lock$)|(//)|(\.$)")


def _revision(value: str) -> str:
    if not value.strip():
        raise failures.usage("--revision must not be empty", "pass a branch, tag or commit, e.g. --revision main")
    if _BAD_REVISION.search(value):
        raise failures.usage(
            f"--revision {value!r} cannot be a branch, tag or commit name (no spaces, '..', '~^:?*[\\', "
            "leading '-' or '/')",
            "pass a branch, tag or commit as the model page lists them, e.g. --revision main",
        )
    return value


def _local_dir(value: str | None, force: bool) -> Path:
    """The target folder; never a folder whose other contents a download would mix with, unless asked."""
    if value is None:
        return DEFAULT_LOCAL_DIR
    if not value.strip():
        raise failures.usage("--local-dir is empty", f"name a folder, or leave the flag out for {DEFAULT_LOCAL_DIR}")
    path = Path(value).expanduser().absolute()
    if force:
        return path
    home = Path(os.environ.get("HOME") or "~").expanduser().absolute()
    taboos = (
        (Path(path.anchor), "the filesystem root"),
        (home, "your home folder"),
        (PROJECT_DIR, "this project's folder"),
    )
    for taboo, what in taboos:
        if path.resolve() == taboo.resolve():
            raise failures.usage(
                f"--local-dir {value} is {what}: the model's files would mix with everything else there",
                f"use a folder of its own, e.g. --local-dir {shlex.quote(str(path / 'openaudio-s1-mini'))} "
                "(or add --force-local-dir if you really mean it)",
            )
    return path


def _check_env_file(given: str) -> None:
    """--env-file names a regular file (after symlinks): a FIFO or a device could block or never end."""
    try:
        mode = os.stat(given).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise failures.usage(f"--env-file {given}: no such file") from None
    except OSError as exc:
        raise failures.usage(f"--env-file {given}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise failures.env_flag_not_regular(given, failures.file_type(mode))


def parse(argv: list[str]) -> Options:
    a = build_parser().parse_args(argv)
    if a.model.count("/") != 1 or not all(a.model.split("/")):
        raise failures.usage(f"--model {a.model!r} is not of the form owner/name")
    env_file = Path(a.env_file) if a.env_file else PROJECT_DIR / ".env"
    if a.env_file:
        _check_env_file(a.env_file)
    reuse_from = tuple(Path(d).expanduser() for d in a.reuse_from)
    for d, given in zip(reuse_from, a.reuse_from, strict=True):
        if not d.is_dir():
            raise failures.usage(
                f"--reuse-from {given}: no such folder",
                f"check the path (`ls -d {given}`), then run `bash setup.sh --reuse-from DIR` with one that exists",
            )
    return Options(
        reuse_from=reuse_from,
        link=a.link,
        also_cache=a.also_cache,
        connections=_connections(a.connections),
        local_dir=_local_dir(a.local_dir, a.force_local_dir),
        force_local_dir=a.force_local_dir,
        model=a.model,
        revision=_revision(a.revision),
        env_file=env_file,
        token_stdin=a.token_stdin or bool(a.token_from),
        token_from="" if a.token_stdin else (a.token_from or ""),
        check=a.check,
        json=a.json,
        quiet=a.quiet,
        allow_insecure=a.allow_insecure_endpoint,
        prepare=a.prepare,
        demo=a.demo,
    )
