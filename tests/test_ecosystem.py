"""--prepare (a machine's first boot) and --demo (the flow with no token and no network)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gatedfetch import localhub, options
from tests.conftest import MODEL, Env, copy_project, hub_content


def test_prepare_without_token_checks_and_prints_next_steps(env: Env) -> None:
    r = env.run("--prepare")
    assert r.code == 0, r.err
    assert "reachable" in r.err and "hf auth login" in r.err and "setup.sh" in r.err
    assert not (env.out_dir / "model.pth").exists()
    assert all(q.headers.get("authorization") is None for q in env.hub.requests)


def test_prepare_with_token_goes_on_to_the_full_setup(env: Env, tokens: dict[str, str]) -> None:
    env.store_login(tokens["accepted_read"])
    r = env.run("--prepare")
    assert r.code == 0, r.err
    assert (env.out_dir / "model.pth").read_bytes() == hub_content(env.hub)["model.pth"]


def test_prepare_reports_an_unreachable_hub(env: Env) -> None:
    r = env.run("--prepare", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert r.code == 7
    assert "error: cannot reach the hub at http://127.0.0.1:9" in r.err and "fix:" in r.err
    assert "prepare: Python ready" not in r.err


def test_prepare_reports_too_little_disk(env: Env) -> None:
    import dataclasses

    repo = env.hub.repo(MODEL)
    sha = repo.commit("main")
    repo.commits[sha]["model.pth"] = dataclasses.replace(repo.commits[sha]["model.pth"], size=10**16)
    r = env.run("--prepare")
    assert r.code == 9 and "needed" in r.err


def test_demo_runs_the_whole_flow_and_cleans_up(env: Env, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = env.run("--demo", env={"TMPDIR": str(tmp)}, drop=("HF_ENDPOINT",), local_dir=False)
    assert r.code == 0, r.err
    assert "ready:" in r.err and "verified" in r.err
    assert list(tmp.iterdir()) == []
    assert not (env.project / "checkpoints").exists()


def test_demo_works_from_a_copy_of_the_product_without_tests(env: Env, tmp_path: Path) -> None:
    product = copy_project(tmp_path / "product")
    assert not (product / "tests").exists() and (product / "gatedfetch" / "localhub" / "__main__.py").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environ = env.base_environ()
    environ.pop("HF_ENDPOINT")
    proc = subprocess.run(
        ["bash", str(product / "setup.sh"), "--demo"],
        cwd=elsewhere, env=environ, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
    )
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    assert "ready:" in err
    assert not (product / "checkpoints").exists()


def test_every_demo_scenario_has_a_token_of_the_local_hub() -> None:
    assert tuple(localhub.DEMO_SCENARIOS) == options.DEMO_SCENARIOS
    assert all(name in localhub.TOKENS for name in localhub.DEMO_SCENARIOS.values())


def test_demo_scenario_shows_its_message(env: Env) -> None:
    r = env.run("--demo", "pending", drop=("HF_ENDPOINT",), local_dir=False)
    assert r.code == 5
    assert "awaiting a review" in r.err
    last = r.err.strip().splitlines()[-1]
    assert "exit code 5 is this scenario's refusal, shown on purpose: the demo worked" in last


def test_demo_json_is_one_document(env: Env) -> None:
    r = env.run("--demo", "--json", drop=("HF_ENDPOINT",), local_dir=False)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["status"] == "ready" and doc["user"] == "alice" and doc["files"]


def test_unknown_demo_scenario_is_a_usage_error(env: Env) -> None:
    r = env.run("--demo", "nonsense", local_dir=False)
    assert r.code == 2 and "nonsense" in r.err
