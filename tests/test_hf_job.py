"""scripts/hf_job.py: the setup submitted as a Hugging Face Job, through the real huggingface_hub client,
against the local test hub (which records what the Jobs API receives). The token goes in the Job's
`secrets` (the JSON field the client sends), nowhere else; without a usable token, or without gated
access, nothing reaches the Jobs API."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import MODEL, REPO_ROOT, Env, Result, assert_no_secret

URL = "https://git.example.org/team/openaudio-setup.git"
SCRIPT = "scripts/hf_job.py"


def launch(
    env: Env,
    *args: str,
    environ: dict[str, str] | None = None,
    stdin: bytes | None = None,
    drop: tuple[str, ...] = (),
) -> Result:
    """`python scripts/hf_job.py ...` from the project copy (so its .env and git remote are the copy's)."""
    script = env.project / SCRIPT
    if not script.exists():
        script.parent.mkdir(exist_ok=True)
        shutil.copy2(REPO_ROOT / SCRIPT, script)
    full = env.base_environ()
    full.update(environ or {})
    for k in drop:
        full.pop(k, None)
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=env.project,
        env=full,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


def jobs_api_calls(env: Env) -> list[str]:
    return [f"{r.method} {r.path}" for r in env.hub.requests if r.path.startswith("/api/jobs")]


def only_job(env: Env) -> dict[str, Any]:
    assert len(env.hub.jobs) == 1, env.hub.jobs
    return env.hub.jobs[0]


def user_of(env: Env, token: str) -> str:
    return env.hub.world.users[token].name


# -- a submission ---------------------------------------------------------------------------------


def test_the_token_is_the_jobs_secret_and_nowhere_else(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    r = launch(env, "--repo-url", URL, "--ref", "v1", "--", "--revision", "v1.0", environ={"HF_TOKEN": token})
    assert r.code == 0, r.err
    job = only_job(env)
    body = job["body"]
    # huggingface_hub's run_job sends {"secrets": {...}} next to {"environment": {...}} (_create_job_spec).
    assert body["secrets"] == {"HF_TOKEN": token}
    plain = json.dumps({k: v for k, v in body.items() if k != "secrets"})
    assert_no_secret(token, plain)
    assert "HF_TOKEN" not in json.dumps(body["environment"])  # neither the name, nor "$HF_TOKEN", nor the value
    assert body["environment"] == {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    # The submission itself is made with the same token, to the user's own namespace.
    assert job["authorization"] == f"Bearer {token}"
    assert job["namespace"] == user_of(env, token)


def test_the_job_clones_the_project_and_runs_its_setup(env: Env, tokens: dict[str, str]) -> None:
    r = launch(
        env,
        "--repo-url", URL, "--ref", "v1", "--flavor", "cpu-basic", "--timeout", "30m",
        "--", "--revision", "v1.0", "--local-dir", "/data/my model",
        environ={"HF_TOKEN": tokens["accepted_read"]},
    )  # fmt: skip
    assert r.code == 0, r.err
    body = only_job(env)["body"]
    assert body["command"] == [
        "bash",
        "-lc",
        f"git clone --depth 1 --branch v1 {URL} /workspace/app && cd /workspace/app && "
        "bash setup.sh --json --revision v1.0 --local-dir '/data/my model'",
    ]
    assert body["dockerImage"] == "python:3.12"
    assert body["flavor"] == "cpu-basic" and body["timeoutSeconds"] == 30 * 60


def test_the_defaults_and_what_is_printed(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    r = launch(env, "--repo-url", URL, environ={"HF_TOKEN": token})
    assert r.code == 0, r.err
    body = only_job(env)["body"]
    assert body["flavor"] == "cpu-basic" and body["timeoutSeconds"] == 2 * 3600
    assert body["command"][2].startswith(f"git clone --depth 1 {URL} /workspace/app && ")
    assert body["command"][2].endswith("&& bash setup.sh --json")
    job_id = r.out.split("job:", 1)[1].split()[0]
    owner = user_of(env, token)
    assert f"{env.hub.url}/jobs/{owner}/{job_id}" in r.out
    assert f"hf jobs logs -f {owner}/{job_id}" in r.out
    assert "token: HF_TOKEN from the environment (hf_****" in r.err
    assert_no_secret(token, r.out, r.err)


@pytest.mark.parametrize("source", ["stdin", "dotenv", "stored"])
def test_every_token_source_of_setup_sh_works(env: Env, tokens: dict[str, str], source: str) -> None:
    token = tokens["accepted_write"]
    args: list[str] = ["--repo-url", URL]
    stdin = None
    if source == "stdin":
        args.append("--token-stdin")
        stdin = token.encode() + b"\n"
    elif source == "dotenv":
        env.write_env(f"HF_TOKEN={token}\n")
    else:
        env.store_login(token)
    r = launch(env, *args, stdin=stdin)
    assert r.code == 0, r.err
    assert only_job(env)["body"]["secrets"] == {"HF_TOKEN": token}
    expected = {"stdin": "standard input", "dotenv": "HF_TOKEN in ", "stored": "the stored login"}[source]
    assert f"token: {expected}" in r.err
    assert_no_secret(token, r.out, r.err)


# -- refusals before anything is submitted ---------------------------------------------------------


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("error:", "fix:"))]


def test_no_token_exits_3_with_setup_sh_s_own_message_and_submits_nothing(env: Env) -> None:
    r = launch(env, "--repo-url", URL)
    assert r.code == 3, r.err
    assert jobs_api_calls(env) == []
    setup = env.run("--check")
    assert setup.code == 3
    assert error_lines(r.err) == error_lines(setup.err) and error_lines(r.err)


def test_an_invalid_token_exits_4_before_any_job(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["invalid"]
    r = launch(env, "--repo-url", URL, environ={"HF_TOKEN": token})
    assert r.code == 4, r.err
    assert "rejected the token hf_****" in r.err
    assert jobs_api_calls(env) == [] and env.hub.jobs == []
    assert_no_secret(token, r.out, r.err)


@pytest.mark.parametrize("placeholder", ["$HF_TOKEN", "${HF_TOKEN}"])
def test_a_shell_placeholder_is_never_sent_as_the_secret(env: Env, placeholder: str) -> None:
    """The trap of the Python API: it passes secrets={"HF_TOKEN": "$HF_TOKEN"} through as 9 characters."""
    r = launch(env, "--repo-url", URL, environ={"HF_TOKEN": placeholder})
    assert r.code == 4, r.err
    assert "placeholder" in r.err
    assert jobs_api_calls(env) == [] and env.hub.jobs == []


def test_without_gated_access_exits_5_before_any_job(env: Env, tokens: dict[str, str]) -> None:
    r = launch(env, "--repo-url", URL, environ={"HF_TOKEN": tokens["not_accepted"]})
    assert r.code == 5, r.err
    assert "has not accepted the licence" in r.err
    assert jobs_api_calls(env) == []


def test_a_setup_argument_is_checked_before_any_job(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    r = launch(env, "--repo-url", URL, "--", "--revision", "no-such-branch", environ={"HF_TOKEN": token})
    assert r.code == 6, r.err
    assert jobs_api_calls(env) == []


@pytest.mark.parametrize(
    "args",
    [
        ("--", "--token-stdin"),
        ("--", "--env-file", ".env"),
        ("--", "--bogus-flag"),
        ("--timeout", "two hours"),
        ("--ref", "0123456789abcdef0123456789abcdef01234567"),
    ],
)
def test_arguments_that_cannot_work_are_usage_errors(env: Env, tokens: dict[str, str], args: tuple[str, ...]) -> None:
    r = launch(env, "--repo-url", URL, *args, environ={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 2, r.err
    assert "error:" in r.err and "fix:" in r.err and "Traceback" not in r.err
    assert jobs_api_calls(env) == []


def test_a_token_among_the_setup_arguments_is_refused_without_printing_it(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    r = launch(env, "--repo-url", URL, "--", "--model", token, environ={"HF_TOKEN": token})
    assert r.code == 2, r.err
    assert jobs_api_calls(env) == []
    assert_no_secret(token, r.out, r.err)


# -- the repository URL ---------------------------------------------------------------------------


def git(env: Env, *args: str) -> None:
    subprocess.run(["git", "-C", str(env.project), *args], check=True, capture_output=True)


def test_without_a_remote_it_asks_for_repo_url(env: Env, tokens: dict[str, str]) -> None:
    r = launch(env, environ={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 2, r.err
    assert "--repo-url" in r.err
    assert env.hub.requests == []  # refused before looking for the token


def test_the_origin_remote_is_the_default_and_ssh_becomes_https(env: Env, tokens: dict[str, str]) -> None:
    git(env, "init", "-q")
    git(env, "remote", "add", "origin", "git@github.com:team/openaudio-setup.git")
    r = launch(env, environ={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "git clone --depth 1 https://github.com/team/openaudio-setup.git /workspace/app" in (
        only_job(env)["body"]["command"][2]
    )
    assert "ssh" in r.err  # says it rewrote the URL


def test_a_local_path_as_origin_is_refused(env: Env, tokens: dict[str, str]) -> None:
    git(env, "init", "-q")
    git(env, "remote", "add", "origin", "/home/me/openaudio-setup")
    r = launch(env, environ={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 2, r.err
    assert "local path" in r.err and "--repo-url" in r.err
    assert env.hub.requests == []


def test_a_url_with_credentials_is_refused_without_printing_them(env: Env, tokens: dict[str, str]) -> None:
    url = "https://me:s3cr3t-pass@github.com/team/x.git"
    r = launch(env, "--repo-url", url, environ={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 2, r.err
    assert "s3cr3t-pass" not in r.out + r.err
    assert env.hub.requests == []


# -- dry run, and the Jobs API saying no ----------------------------------------------------------


def test_dry_run_checks_everything_and_submits_nothing(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    r = launch(env, "--repo-url", URL, "--dry-run", "--", "--revision", "v1.0", environ={"HF_TOKEN": token})
    assert r.code == 0, r.err
    assert jobs_api_calls(env) == [] and env.hub.jobs == []
    assert "nothing submitted" in r.out
    assert "python:3.12" in r.out and "cpu-basic" in r.out and "2h" in r.out
    assert "bash setup.sh --json --revision v1.0" in r.out
    assert "HF_HUB_DISABLE_PROGRESS_BARS" in r.out
    assert "secrets:  HF_TOKEN (hf_****" in r.out
    assert any("whoami" in q.path for q in env.hub.requests)  # the token was checked
    assert_no_secret(token, r.out, r.err)


def test_dry_run_still_refuses_an_invalid_token(env: Env, tokens: dict[str, str]) -> None:
    r = launch(env, "--repo-url", URL, "--dry-run", environ={"HF_TOKEN": tokens["invalid"]})
    assert r.code == 4, r.err


def test_a_refusal_of_the_jobs_api_says_what_jobs_need(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    env.hub.add_fault("/api/jobs/", status=403, method="POST")
    r = launch(env, "--repo-url", URL, environ={"HF_TOKEN": token})
    assert r.code == 5, r.err
    assert "Jobs API refused" in r.err and "fix:" in r.err and "Traceback" not in r.err
    assert env.hub.jobs == []
    assert_no_secret(token, r.out, r.err)


def test_the_model_check_uses_the_setup_arguments(env: Env, tokens: dict[str, str]) -> None:
    """`-- --model other/repo`: the access check is for that repo, not the default one."""
    token = tokens["accepted_read"]
    r = launch(env, "--repo-url", URL, "--dry-run", "--", "--model", "nobody/missing", environ={"HF_TOKEN": token})
    assert r.code == 6, r.err
    assert "'nobody/missing' not found" in r.err and f"{MODEL}@" not in r.err
