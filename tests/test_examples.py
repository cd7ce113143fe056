"""examples/github-actions.yml, the CI recipe users copy: where the token goes (a secret, into the
`env` of the steps that call setup.sh, nowhere else), the cache keyed by the model commit, a step that
reads the JSON of `--json`, nothing that prints the token. Every check is also run against a broken
copy of the workflow, so that each one is shown to catch what it is for. Then the workflow's own shell
lines run against the local test hub, as GitHub would run them."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import MODEL, REPO_ROOT, Env, assert_no_secret, hub_content

WORKFLOW = REPO_ROOT / "examples" / "github-actions.yml"
MODEL_DIR = "checkpoints/openaudio-s1-mini"
SECRET_REF = "${{ secrets.HF_TOKEN }}"
# Shell text that would print or expose the token, in any step's `run`.
FORBIDDEN_IN_RUN = {
    "echo $HF_TOKEN": re.compile(r"echo\s+\"?\$\{?HF_TOKEN"),
    "$HF_TOKEN": re.compile(r"\$HF_TOKEN\b"),
    "${HF_TOKEN}": re.compile(r"\$\{HF_TOKEN"),
    "set -x": re.compile(r"set\s+-[a-wyz]*x|set\s+-o\s+xtrace|bash\s+-x"),
    "--token ": re.compile(r"--token[ =]"),
    "printenv": re.compile(r"\bprintenv\b"),
    "secrets.": re.compile(r"secrets\."),
}


def load(path: Path = WORKFLOW) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def triggers(doc: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 (pyyaml) reads the key `on` as the boolean True.
    on = doc.get("on", doc.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on or {})


def jobs(doc: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    return dict(doc.get("jobs") or {})


def all_steps(doc: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in jobs(doc).values() for step in job.get("steps") or []]


def calls_setup(step: dict[str, Any]) -> bool:
    return bool(re.search(r"\bbash\s+(\./)?setup\.sh\b", str(step.get("run", ""))))


def strings(node: Any, where: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every string in the document (keys too) with the path to it."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str):
                yield (*where, k), k
            yield from strings(v, (*where, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from strings(v, (*where, i))
    elif isinstance(node, str):
        yield where, node


def index_of(steps: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> int:
    return next((i for i, s in enumerate(steps) if pred(s)), -1)


def is_check(step: dict[str, Any]) -> bool:
    return bool(re.search(r"setup\.sh\s+--check\s+--json\s*>\s*check\.json", str(step.get("run", ""))))


def is_download(step: dict[str, Any]) -> bool:
    return bool(re.search(r"setup\.sh\s+--json\s*>\s*setup\.json", str(step.get("run", ""))))


def is_cache(step: dict[str, Any]) -> bool:
    return str(step.get("uses", "")).startswith("actions/cache@")


# -- the checks: each returns what is wrong ----------------------------------------------------


def token_problems(doc: dict[Any, Any]) -> list[str]:
    out: list[str] = []
    if "HF_TOKEN" in (doc.get("env") or {}):
        out.append("HF_TOKEN in the workflow's env (every step would get it)")
    for name, job in jobs(doc).items():
        if "HF_TOKEN" in (job.get("env") or {}):
            out.append(f"HF_TOKEN in job {name}'s env (every step would get it)")
    for i, step in enumerate(all_steps(doc)):
        env = step.get("env") or {}
        if calls_setup(step) and env.get("HF_TOKEN") != SECRET_REF:
            out.append(f"step {i} runs setup.sh without HF_TOKEN: {SECRET_REF} in its env")
        if not calls_setup(step) and "HF_TOKEN" in env:
            out.append(f"step {i} gets HF_TOKEN but does not run setup.sh")
    for where, text in strings(doc):
        if "secrets." not in text:
            continue
        in_step_env = len(where) >= 6 and where[0] == "jobs" and where[2] == "steps" and where[4] == "env"
        if not (in_step_env and where[5] == "HF_TOKEN" and text == SECRET_REF):
            out.append(f"a secret is used outside a step's env HF_TOKEN, at {'.'.join(map(str, where))}")
    return out


def run_problems(doc: dict[Any, Any]) -> list[str]:
    out: list[str] = []
    for i, step in enumerate(all_steps(doc)):
        run = str(step.get("run", ""))
        for what, pattern in FORBIDDEN_IN_RUN.items():
            if pattern.search(run):
                out.append(f"step {i}'s run contains {what}")
        if "${{" in run:
            out.append(f"step {i}'s run contains a ${{{{ }}}} expression (pass values through env instead)")
    return out


def cache_problems(doc: dict[Any, Any]) -> list[str]:
    steps = all_steps(doc)
    check, cache, download = index_of(steps, is_check), index_of(steps, is_cache), index_of(steps, is_download)
    if check < 0:
        return ["no step runs `bash setup.sh --check --json > check.json`"]
    out: list[str] = []
    check_step = steps[check]
    if check_step.get("id") != "check":
        out.append("the check step has no id `check`")
    if not re.search(r"commit=.*>>\s*\"?\$GITHUB_OUTPUT", str(check_step.get("run", ""))):
        out.append("the check step does not write commit=... to $GITHUB_OUTPUT")
    if cache < 0:
        return [*out, "no actions/cache step"]
    with_ = steps[cache].get("with") or {}
    if str(with_.get("path", "")).strip() != MODEL_DIR:
        out.append(f"the cache path is not {MODEL_DIR}")
    if not re.search(r"\$\{\{\s*steps\.check\.outputs\.commit\s*\}\}", str(with_.get("key", ""))):
        out.append("the cache key does not contain steps.check.outputs.commit")
    if not check < cache < download:
        out.append("the steps are not in the order check, cache, download")
    return out


def json_problems(doc: dict[Any, Any]) -> list[str]:
    steps = all_steps(doc)
    download = index_of(steps, is_download)
    if download < 0:
        return ["no step runs `bash setup.sh --json > setup.json`"]
    for step in steps[download + 1 :]:
        run = str(step.get("run", ""))
        if "setup.json" in run and all(f'"{k}"' in run or f"'{k}'" in run for k in ("status", "commit", "files")):
            return []
    return ["no step after the download reads status, commit and files from setup.json"]


def trigger_problems(doc: dict[Any, Any]) -> list[str]:
    on = triggers(doc)
    out = [f"not triggered on {t}" for t in ("push", "workflow_dispatch") if t not in on]
    if "pull_request_target" in on:
        out.append("pull_request_target would run fork code with the secret")
    return out


CHECKS = (token_problems, run_problems, cache_problems, json_problems, trigger_problems)


def problems(doc: dict[Any, Any]) -> list[str]:
    return [p for check in CHECKS for p in check(doc)]


# -- the recipe passes every check --------------------------------------------------------------


def test_the_workflow_passes_every_check() -> None:
    assert problems(load()) == []


def test_the_token_reaches_exactly_the_steps_that_call_setup_sh() -> None:
    steps = all_steps(load())
    with_token = [i for i, s in enumerate(steps) if "HF_TOKEN" in (s.get("env") or {})]
    assert with_token == [index_of(steps, is_check), index_of(steps, is_download)]


# -- and each check catches what it is for -------------------------------------------------------


def _step(doc: dict[Any, Any], pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return next(s for s in all_steps(doc) if pred(s))


def _job(doc: dict[Any, Any]) -> dict[str, Any]:
    return next(iter(jobs(doc).values()))


def _is_summary(step: dict[str, Any]) -> bool:
    return "setup.json" in str(step.get("run", "")) and not is_download(step)


def _token_in_job_env(doc: dict[Any, Any]) -> None:
    _job(doc)["env"] = {"HF_TOKEN": SECRET_REF}


def _literal_token(doc: dict[Any, Any]) -> None:
    _step(doc, is_download)["env"]["HF_TOKEN"] = "hf_" + "A" * 34


def _token_for_summary(doc: dict[Any, Any]) -> None:
    _step(doc, _is_summary)["env"] = {"HF_TOKEN": SECRET_REF}


def _append_to_run(line: str) -> Callable[[dict[Any, Any]], None]:
    def mutate(doc: dict[Any, Any]) -> None:
        step = _step(doc, is_download)
        step["run"] = f"{line}\n{step['run']}"

    return mutate


def _key_without_commit(doc: dict[Any, Any]) -> None:
    _step(doc, is_cache)["with"]["key"] = "openaudio-s1-mini-${{ github.sha }}"


def _cache_after_download(doc: dict[Any, Any]) -> None:
    steps = _job(doc)["steps"]
    cache = steps.pop(index_of(steps, is_cache))
    steps.append(cache)


def _no_summary(doc: dict[Any, Any]) -> None:
    steps = _job(doc)["steps"]
    steps.pop(index_of(steps, _is_summary))


def _pull_request_target(doc: dict[Any, Any]) -> None:
    key = "on" if "on" in doc else True
    doc[key] = {"pull_request_target": None, "workflow_dispatch": None}


BREAKAGES: dict[str, tuple[Callable[[dict[Any, Any]], None], str]] = {
    "token in the job env": (_token_in_job_env, "job model's env"),
    "literal token": (_literal_token, "without HF_TOKEN"),
    "token for a step that does not need it": (_token_for_summary, "does not run setup.sh"),
    "echo the token": (_append_to_run('echo "$HF_TOKEN"'), "echo $HF_TOKEN"),
    "braced token": (_append_to_run("curl -H \"Authorization: Bearer ${HF_TOKEN}\" x"), "${HF_TOKEN}"),
    "set -x": (_append_to_run("set -euxo pipefail"), "set -x"),
    "token flag": (_append_to_run("bash setup.sh --token ${{ secrets.HF_TOKEN }}"), "--token"),
    "cache key without the commit": (_key_without_commit, "steps.check.outputs.commit"),
    "cache after the download": (_cache_after_download, "order"),
    "nothing reads setup.json": (_no_summary, "reads status, commit and files"),
    "pull_request_target": (_pull_request_target, "pull_request_target"),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_each_check_catches_a_broken_workflow(name: str) -> None:
    mutate, expected = BREAKAGES[name]
    doc = copy.deepcopy(load())
    mutate(doc)
    found = problems(doc)
    assert any(expected in p for p in found), found


# -- the workflow's shell lines work ------------------------------------------------------------


def step_environ(env: Env, step: dict[str, Any], secrets: dict[str, str], gh: Path) -> dict[str, str]:
    """What GitHub gives a step: its env (secrets filled in), GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files."""
    environ = env.base_environ()
    for key, value in (step.get("env") or {}).items():
        m = re.fullmatch(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", str(value))
        assert m, f"this test only fills in secrets, not {value!r}"
        environ[key] = secrets.get(m.group(1), "")  # GitHub gives an empty string for a missing secret
    gh.mkdir(exist_ok=True)
    environ["GITHUB_OUTPUT"] = str(gh / "output")
    environ["GITHUB_STEP_SUMMARY"] = str(gh / "summary.md")
    return environ


def run_step(env: Env, step: dict[str, Any], secrets: dict[str, str], gh: Path) -> subprocess.CompletedProcess[str]:
    script = gh.parent / "step.sh"
    script.write_text(str(step["run"]))
    # `shell: bash` on GitHub is `bash --noprofile --norc -eo pipefail {0}`, run in the checkout.
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=env.project,
        env=step_environ(env, step, secrets, gh),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_check_step_writes_the_hub_commit_to_github_output(
    env: Env, tokens: dict[str, str], tmp_path: Path
) -> None:
    doc = load()
    assert (_job(doc).get("defaults") or doc.get("defaults") or {}).get("run", {}).get("shell") == "bash"
    gh = tmp_path / "gh"
    p = run_step(env, _step(doc, is_check), {"HF_TOKEN": tokens["accepted_read"]}, gh)
    assert p.returncode == 0, p.stderr
    outputs = (gh / "output").read_text().splitlines()
    assert outputs == [f"commit={env.hub.repo(MODEL).commit('main')}"]
    assert not (env.project / MODEL_DIR / "model.pth").exists()  # --check downloads nothing
    assert_no_secret(tokens["accepted_read"], p.stdout, p.stderr, "\n".join(outputs))


def test_the_whole_recipe_downloads_summarises_and_reuses_the_cache(
    env: Env, tokens: dict[str, str], tmp_path: Path
) -> None:
    """Every `run:` step in order (the `uses:` steps are GitHub's); then the download step again over the
    same folder, as after a cache hit: nothing is transferred."""
    secrets = {"HF_TOKEN": tokens["accepted_read"]}
    gh = tmp_path / "gh"
    logs = []
    for step in all_steps(load()):
        if "run" in step:
            p = run_step(env, step, secrets, gh)
            assert p.returncode == 0, (step.get("name"), p.stderr)
            logs += [p.stdout, p.stderr]
    commit = env.hub.repo(MODEL).commit("main")
    doc = json.loads((env.project / "setup.json").read_text())
    assert doc["status"] == "ready" and doc["commit"] == commit
    content = hub_content(env.hub)
    assert {f["path"] for f in doc["files"]} == set(content)
    for path, data in content.items():
        assert (env.project / MODEL_DIR / path).read_bytes() == data
    summary = (gh / "summary.md").read_text()
    assert "ready" in summary and commit in summary and "model.pth" in summary

    env.hub.clear_requests()
    p = run_step(env, _step(load(), is_download), secrets, gh)
    assert p.returncode == 0, p.stderr
    assert env.hub.bytes_sent() == 0
    assert_no_secret(tokens["accepted_read"], p.stdout, p.stderr, summary, *logs)


def test_a_missing_secret_fails_the_check_and_the_summary_gives_the_fix(env: Env, tmp_path: Path) -> None:
    doc = load()
    gh = tmp_path / "gh"
    p = run_step(env, _step(doc, is_check), {}, gh)
    assert p.returncode == 3, p.stderr
    summary_step = _step(doc, lambda s: s.get("if") == "always()")
    p = run_step(env, summary_step, {}, gh)
    assert p.returncode == 0, p.stderr
    summary = (gh / "summary.md").read_text()
    assert "no_token" in summary and "hf auth login" in summary and "check.json" in summary
