"""The command line: flags, the flow (find token → check hub → transfer → report), exit codes.

Data flows one way: the flow returns an `Outcome` for every path, success or failure; `main()` hands
it to the reporter once, and its exit code is the process's. What escapes the flow (a bad flag, a bug)
becomes an outcome in `guarded`, the one place that turns exceptions into messages and exit codes.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import sys
import traceback
from collections.abc import Callable
from typing import TextIO
from urllib.parse import urlsplit

from . import environ, failures
from .failures import DEBUG_VARIABLE, Failure
from .options import HUB_ENDPOINT, PROJECT_DIR, Options, parse
from .outcome import Outcome
from .report import Reporter
from .secret import Redactor
from .timing import Clock


def check_endpoint(endpoint: str, allow_insecure: bool, rep: Reporter) -> None:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise failures.usage(f"HF_ENDPOINT={endpoint!r} is not an http(s) URL")
    if is_the_hub(endpoint):
        return
    if parts.scheme == "http" and not _is_loopback(parts.hostname) and not allow_insecure:
        raise failures.usage(
            f"HF_ENDPOINT={endpoint} is plain http:// to another machine: the token would travel unencrypted "
            "(use https://, or pass --allow-insecure-endpoint if you really mean it)"
        )
    rep.warn(f"HF_ENDPOINT is {endpoint}: the token is sent to {parts.hostname}, not to huggingface.co")


def is_the_hub(endpoint: str) -> bool:
    """https://huggingface.co however it is spelt: any case, a trailing dot or slash, port 443."""
    parts = urlsplit(endpoint.strip())
    try:
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").rstrip(".")
    official = urlsplit(HUB_ENDPOINT).hostname
    return (
        parts.scheme.lower() == "https"
        and host == official
        and port in (None, 443)
        and parts.path.strip("/") == ""
        and not parts.username
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(opts: Options, rep: Reporter) -> Outcome:
    # Imported here so that `--help` works with any python3, before the venv exists.
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from . import flow

    try:
        validate_repo_id(opts.model)
    except HFValidationError as exc:
        raise failures.usage(
            f"--model {opts.model!r} is not a repo id: {exc}",
            "pass it as owner/name, e.g. --model fishaudio/openaudio-s1-mini",
        ) from None

    endpoint = constants.ENDPOINT.rstrip("/")
    if opts.demo:
        from . import demo

        return demo.run(opts, rep)
    if constants.HF_HUB_OFFLINE:
        if opts.also_cache:  # filing needs the Hub's listing (blob names, the ref): nothing to do offline
            rep.warn("--also-cache: HF_HUB_OFFLINE=1 only checks the local copy; nothing is filed into the Hugging "
                     "Face cache (run again online to file it)")
        return flow.offline(opts, rep, endpoint)
    try:
        check_endpoint(endpoint, opts.allow_insecure, rep)
    except Failure as failure:
        return Outcome.begin(opts, endpoint).failed(failure)
    if opts.prepare:
        return flow.prepare(opts, rep, endpoint)
    return flow.online(opts, rep, endpoint)


def guarded(
    rep: Reporter,
    body: Callable[[], int],
    *,
    failed: Callable[[Failure], int] | None = None,
    interrupted: str = "interrupted",
) -> int:
    """Run an entry point's body; the one place that turns what escapes it into a message and an exit code.

    `failed` says a failure that escaped (a bad flag, a bug) and returns its code; by default its lines are
    printed. setup.sh's body returns the flow's `Outcome` through `Reporter.finish`, and so does `failed`.
    """
    def fail(failure: Failure) -> int:
        if failed is not None:
            return failed(failure)
        rep.failure(failure)
        return failure.exit_code

    try:
        return body()
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except Failure as failure:
        return fail(failure)
    except KeyboardInterrupt:
        rep.line(f"\n{interrupted}")
        return 130
    except ModuleNotFoundError as exc:  # an interpreter without the requirements, e.g. a wrong PYTHON
        return fail(failures.missing_module(sys.executable, exc.name, str(PROJECT_DIR / "requirements.txt")))
    except Exception as exc:  # the last resort: a bug, never a traceback unless asked
        debug = bool(os.environ.get(DEBUG_VARIABLE))
        if debug:
            rep.line("".join(traceback.format_exception(exc)).rstrip("\n"))
        return fail(failures.unexpected(exc, debug))


def _writable(stream: TextIO | None) -> bool:
    """False for a standard stream the shell closed (`>&-`, `2>&-`): Python then gives None, or the descriptor
    number has been reused by something we cannot write to (a pipe's read end, in a shell pipeline)."""
    if stream is None:
        return False
    try:
        flags = fcntl.fcntl(stream.fileno(), fcntl.F_GETFL)
    except (OSError, ValueError):
        return False
    return flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)


def quiet_library() -> None:
    """No request and no file the job does not need, before huggingface_hub is imported (it reads its settings then).

    huggingface_hub 2.4 builds every request's user agent with `detect_agent()`, which fetches
    `{HF_ENDPOINT}/api/agent-harnesses` (waiting up to 3 s) and caches it in `$HF_HOME/.agent_harnesses.json`,
    unless HF_HUB_DISABLE_TELEMETRY is set (`utils/_headers.py`, `utils/_detect_agent.py`). A download needs
    neither, and a re-run promises one request and `--check` no file: this process sets it, for itself only.
    """
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


def main(argv: list[str] | None = None) -> int:
    """The helper's entry: the flags parsed once, the reporter set up from them, the flow run, its exit code."""
    clock = Clock.from_environ()  # first: the time before the helper ran is the environment's
    args = list(sys.argv[1:] if argv is None else argv)
    quiet_library()
    # `2>&-`: nowhere to say anything, but the job and its exit code still stand.
    err = sys.stderr if _writable(sys.stderr) else open(os.devnull, "w")  # for the process's life
    redact = Redactor()
    # A bad flag leaves no options to set the reporter up from: the document goes out when --json was written.
    early = Reporter(json_mode="--json" in args, err=err, redact=redact)
    parsed: list[Options] = []

    def read_flags() -> int:
        parsed.append(parse(args))
        return 0

    code = guarded(early, read_flags, failed=lambda f: early.finish(Outcome().failed(f)))
    if not parsed:  # --help (0), or a usage error
        return code
    opts = parsed[0]
    rep = Reporter(quiet=opts.quiet, json_mode=opts.json, err=err, redact=redact, clock=clock)
    if opts.json and not _writable(sys.stdout):  # `>&-`: the document could not be written; nothing done yet
        rep.json_mode = False
        rep.failure(failures.usage("--json: standard output is closed, so the JSON document cannot be written",
                                   "give --json an open standard output (a file or a pipe), or leave --json out"))
        return failures.UsageError.exit_code

    def body() -> int:
        environ.apply()  # before anything imports huggingface_hub, which parses some of them at import
        return rep.finish(run(opts, rep))

    return guarded(
        rep,
        body,
        failed=lambda failure: rep.finish(Outcome().failed(failure)),
        interrupted="interrupted: run `bash setup.sh` again to resume where it stopped",
    )
