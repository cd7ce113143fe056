#!/usr/bin/env python3
"""Run this project's setup as a Hugging Face Job (a container on Hugging Face's machines).

    python scripts/hf_job.py [--flavor cpu-basic] [--timeout 2h] [--image python:3.12]
                             [--repo-url URL] [--ref REF] [--env-file PATH] [--token-stdin]
                             [--dry-run] [-- setup.sh args...]

Finds the token as setup.sh does (--token-stdin, HF_TOKEN, the .env file, the stored `hf auth login`),
checks it and the gated access before anything is submitted, then starts a Job that clones this
project and runs `bash setup.sh --json` in it. The token travels as the Job's secret HF_TOKEN (stored
encrypted by the Hub, given to the container as an environment variable), never in its command or
its plain environment, which anyone who can see the Job can read.

Needs huggingface_hub and python-dotenv: run it with the project's .venv/bin/python (built by
`bash setup.sh --check`), or after `pip install -r requirements.txt`. Exit codes as setup.sh's
(README.md); 0 means the Job was submitted (or, with --dry-run, would be).
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from gatedfetch import failures  # noqa: E402  (standard library only, like cli, options and report)
from gatedfetch.cli import guarded, quiet_library  # noqa: E402
from gatedfetch.failures import Failure  # noqa: E402
from gatedfetch.report import Reporter  # noqa: E402
from gatedfetch.secret import TOKEN_SHAPE, mask, redact  # noqa: E402

if TYPE_CHECKING:
    from gatedfetch.tokens import Found

WORKDIR = "/workspace/app"
DEFAULT_FLAVOR = "cpu-basic"  # the Job only downloads; name a GPU flavor to train in the same Job
DEFAULT_TIMEOUT = "2h"
DEFAULT_IMAGE = "python:3.12"  # Debian-based: has git and bash (the -slim images have no git)
SECRET_NAME = "HF_TOKEN"
JOB_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # non-secret settings only
# setup.sh flags that make no sense inside the Job: it gets its token from the secret HF_TOKEN.
TOKEN_FLAGS = ("--token-stdin", "--env-file", "--token-from")
HELP_FIX = "run `python scripts/hf_job.py --help` for every flag"
TIMEOUT_SHAPE = re.compile(r"[0-9]+(\.[0-9]+)?[smhd]?")
COMMIT_SHAPE = re.compile(r"[0-9a-f]{40}")
PLACEHOLDER = re.compile(r"\$\{?HF_TOKEN\b")  # the shell's name for the token, not the token


def usage(problem: str, fix: str = HELP_FIX) -> failures.UsageError:
    return failures.usage(problem, fix)


# -- arguments ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise usage(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python scripts/hf_job.py",
        description=(
            "Submit this project's setup (`bash setup.sh --json`) as a Hugging Face Job. The token is found "
            "as setup.sh finds it, checked, and given to the Job as its secret HF_TOKEN. Everything after `--` "
            "is passed to setup.sh in the Job."
        ),
        epilog=(
            "example: python scripts/hf_job.py --flavor cpu-basic -- --revision main\n"
            "(a download alone needs no GPU: cpu-basic is enough; a GPU flavor pays off when the Job goes on "
            "to use the model)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--flavor", default=DEFAULT_FLAVOR, help=f"hardware (default: {DEFAULT_FLAVOR}; list: `hf jobs hardware`)"
    )
    p.add_argument(
        "--timeout", default=DEFAULT_TIMEOUT, help=f"maximum run time: 90s, 30m, 2h, 1d (default: {DEFAULT_TIMEOUT})"
    )
    p.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        help=f"Docker image with bash, git and Python >= 3.10 (default: {DEFAULT_IMAGE})",
    )
    p.add_argument(
        "--repo-url",
        metavar="URL",
        help="the git URL the Job clones this project from (default: `git remote get-url origin`); "
        "it must be reachable from the Job without credentials",
    )
    p.add_argument("--ref", metavar="REF", help="branch or tag to clone (default: the remote's default branch)")
    p.add_argument("--env-file", metavar="PATH", help="the .env file to read HF_TOKEN from (default: .env here)")
    p.add_argument("--token-stdin", action="store_true", help="read the token from standard input")
    p.add_argument(
        "--dry-run", action="store_true", help="check everything, print what would be submitted, submit nothing"
    )
    return p


@dataclass
class Args:
    flavor: str
    timeout: str
    image: str
    repo_url: str | None
    ref: str | None
    env_file: Path
    token_stdin: bool
    dry_run: bool
    setup_args: list[str]


def parse(argv: Sequence[str]) -> Args:
    argv = list(argv)
    own, setup_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    a = build_parser().parse_args(own)
    if not TIMEOUT_SHAPE.fullmatch(a.timeout):
        raise usage(f"--timeout {a.timeout!r} is not a duration like 90s, 30m, 2h or 1d")
    if not a.image.strip() or not a.flavor.strip():
        raise usage("--image and --flavor must not be empty")
    if a.ref is not None and (not a.ref.strip() or a.ref.startswith("-") or COMMIT_SHAPE.fullmatch(a.ref)):
        raise usage(
            f"--ref {a.ref!r}: give a branch or a tag (git clone --branch takes no commit id); "
            "to pin the model instead, pass `-- --revision <commit>`"
        )
    env_file = Path(a.env_file) if a.env_file else PROJECT_DIR / ".env"
    if a.env_file and not env_file.is_file():
        raise usage(f"--env-file {a.env_file}: no such file")
    return Args(a.flavor, a.timeout, a.image, a.repo_url, a.ref, env_file, a.token_stdin, a.dry_run, setup_args)


def check_setup_args(setup_args: list[str]) -> tuple[str, str]:
    """Refuse what cannot work in the Job; validate the rest with setup.sh's own parser. Returns (model, revision)."""
    from gatedfetch import options

    for arg in setup_args:
        if arg.split("=", 1)[0] in TOKEN_FLAGS:
            raise usage(
                f"`{arg}` after `--` cannot work in the Job: it gets its token from the secret {SECRET_NAME}",
                "give the token to this script instead (HF_TOKEN, --token-stdin, --env-file or `hf auth login`)",
            )
        if TOKEN_SHAPE.search(arg):
            raise usage(
                "an argument after `--` looks like a token: it would be visible in the Job's command",
                "remove it; the Job gets the token as its secret HF_TOKEN",
            )
    opts = options.parse(setup_args)
    return opts.model, opts.revision


# -- the repository the Job clones ---------------------------------------------------------------


def origin_url() -> str | None:
    try:
        p = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "remote", "get-url", "origin"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    url = p.stdout.strip()
    return url if p.returncode == 0 and url else None


_SCP_LIKE = re.compile(r"(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):(?!//)([^\s]+)")


def clone_url(given: str | None, rep: Reporter) -> str:
    """A URL the Job can clone without credentials: https (ssh remotes are rewritten), never with a secret in it."""
    url = given if given is not None else origin_url()
    flag = "--repo-url" if given is not None else "the git remote origin"
    if url is None:
        raise usage(
            f"this checkout ({PROJECT_DIR}) has no git remote `origin` to tell the Job where to clone it from",
            "pass --repo-url https://github.com/<you>/<this project>.git (a URL the Job can clone without credentials)",
        )
    url = url.strip()
    if TOKEN_SHAPE.search(url):
        raise usage(f"{flag} contains a token: it would be visible in the Job's command", "pass a URL without it")
    parts = urlsplit(url)
    scp = _SCP_LIKE.fullmatch(url) if not parts.scheme or "://" not in url else None
    if parts.scheme == "ssh" or scp:
        host, path = (scp.group(1), scp.group(2)) if scp else (parts.hostname or "", parts.path.lstrip("/"))
        https = f"https://{host}/{path}"
        rep.warn(f"{flag} is an ssh URL and the Job has no ssh key: it will clone {https} (or pass --repo-url)")
        return https
    if parts.username or parts.password:  # never printed: e.g. https://x-access-token:ghp_...@github.com/...
        raise usage(
            f"{flag} carries credentials (user@ or user:password@ before {parts.hostname}): "
            "they would be visible in the Job's command",
            "pass --repo-url without them; the Job can clone only what needs no credentials",
        )
    if parts.scheme not in ("https", "http", "git") or not parts.hostname:
        what = f"a {parts.scheme}: URL" if parts.scheme else "a local path"
        raise usage(
            f"{flag} is {what}, which the Job cannot clone (it runs on another machine)",
            "pass --repo-url https://... (a URL the Job can clone without credentials)",
        )
    return url


def job_command(url: str, ref: str | None, setup_args: list[str]) -> list[str]:
    branch = f"--branch {shlex.quote(ref)} " if ref else ""
    script = (
        f"git clone --depth 1 {branch}{shlex.quote(url)} {WORKDIR} && cd {WORKDIR} && "
        + shlex.join(["bash", "setup.sh", "--json", *setup_args])
    )
    return ["bash", "-lc", script]


# -- the Job ---------------------------------------------------------------------------------


@dataclass
class JobSpec:
    image: str
    command: list[str]
    flavor: str
    timeout: str
    env: dict[str, str]
    secrets: dict[str, str]


def guard(spec: JobSpec, token: str) -> None:
    """The last look before anything leaves: the secret is a real token, and it is nowhere else."""
    from gatedfetch import tokens

    value = spec.secrets.get(SECRET_NAME, "")
    if not value or tokens.placeholder_kind(value) or value != token:
        raise failures.unexpected(RuntimeError("the secret HF_TOKEN is not the token that was checked"))
    plain = [spec.image, spec.flavor, spec.timeout, *spec.command, *spec.env, *spec.env.values()]
    if any(token in text or PLACEHOLDER.search(text) for text in plain):
        raise failures.unexpected(RuntimeError("the token would be in the Job's plain fields"))


def describe(spec: JobSpec, namespace: str, endpoint: str, found: Found) -> list[str]:

    return [
        f"  endpoint: {endpoint}/api/jobs/{namespace}",
        f"  image:    {spec.image}",
        f"  flavor:   {spec.flavor}",
        f"  timeout:  {spec.timeout}",
        f"  command:  {shlex.join(spec.command)}",
        f"  env:      {', '.join(sorted(spec.env)) or '(none)'}",
        f"  secrets:  {', '.join(sorted(spec.secrets))} ({mask(found.token)}, {found.source})",
    ]


def submit_failure(exc: Exception, endpoint: str, namespace: str) -> Failure:
    """What the Jobs API's refusal means, and what to do. The token was valid a moment ago (whoami)."""
    from huggingface_hub.errors import HfHubHTTPError


    if not isinstance(exc, HfHubHTTPError):  # transport: the request may or may not have arrived
        return failures.jobs_unreachable(endpoint, namespace, f"did not answer: {type(exc).__name__}")
    response = exc.response
    status = response.status_code if response is not None else 0
    said = redact(exc.server_message or "no message").splitlines()[0][:300]
    if status in (401, 402, 403):
        return failures.jobs_refused(namespace, status, said)
    if 400 <= status < 500:
        return usage(f"the Jobs API refused the Job (HTTP {status}: {said})")
    return failures.jobs_unreachable(endpoint, namespace, f"failed (HTTP {status}: {said})")


def run(args: Args, rep: Reporter) -> int:
    # Imported here: a missing dependency becomes a clear message (main), not a traceback.
    import httpx2
    from huggingface_hub import HfApi, JobHardware, constants
    from huggingface_hub.errors import HfHubHTTPError

    from gatedfetch import authorize, bounded, cli, options
    from gatedfetch.hub_client import HubClient

    model, revision = check_setup_args(args.setup_args)
    url = clone_url(args.repo_url, rep)
    if args.flavor not in {h.value for h in JobHardware}:
        rep.warn(f"--flavor {args.flavor} is not a flavor this huggingface_hub knows; the Hub will judge it")
    endpoint = constants.ENDPOINT.rstrip("/")
    cli.check_endpoint(endpoint, False, rep)

    # The token: setup.sh's chain, sources, warnings and refusals (exit 3, 4), then whoami (exit 4) and the
    # gated access (exit 5, 6): all before anything is submitted.
    opts = options.Options(
        local_dir=options.DEFAULT_LOCAL_DIR,
        model=model,
        revision=revision,
        env_file=args.env_file,
        token_stdin=args.token_stdin,
        token_from="",
        check=True,
        json=False,
        quiet=False,
        allow_insecure=False,
    )
    found = authorize.find_token(opts, rep)
    deadline = bounded.install_timeouts()
    client = HubClient(endpoint, found.token, found.source, say=rep.info, deadline=deadline)
    who, _ = authorize.authorize(client, found, model, revision, rep)
    deadline.end()  # the checks are done; the Jobs calls below keep only their per-request bounds

    spec = JobSpec(
        image=args.image,
        command=job_command(url, args.ref, args.setup_args),
        flavor=args.flavor,
        timeout=args.timeout,
        env=dict(JOB_ENV),
        secrets={SECRET_NAME: found.token},
    )
    guard(spec, found.token)
    namespace = who.name if who is not None else "(your namespace)"
    if args.dry_run:
        print("dry run: nothing submitted; this Job would be:")
        print("\n".join(describe(spec, namespace, endpoint, found)))
        return 0

    api = HfApi(endpoint=endpoint, token=found.token)
    try:
        # Never retried: a POST that timed out may still have started a (paid) Job.
        job = api.run_job(
            image=spec.image,
            command=spec.command,
            env=spec.env,
            secrets=spec.secrets,
            flavor=spec.flavor,
            timeout=spec.timeout,
            namespace=who.name if who is not None else None,
            token=found.token,
        )
    except (HfHubHTTPError, httpx2.TransportError, OSError) as exc:
        raise submit_failure(exc, endpoint, namespace) from None
    ref = f"{job.owner.name}/{job.id}"
    job_url = getattr(job, "url", None) or f"{endpoint}/jobs/{job.owner.name}/{job.id}"
    rep.info(f"submitted: {spec.image} on {spec.flavor}, the token as the secret {SECRET_NAME}")
    print(f"job:    {job.id}")
    print(f"url:    {job_url}")
    print(f"logs:   hf jobs logs -f {ref}")
    print(f"status: hf jobs inspect {ref}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    quiet_library()
    rep = Reporter()
    return guarded(rep, lambda: run(parse(sys.argv[1:] if argv is None else argv), rep))


if __name__ == "__main__":
    sys.exit(main())
