"""The `--json` contract, defined in gatedfetch/outcome.py and tested here: its fields for each way a run
ends, through `bash setup.sh` as a CI step would read them."""

from __future__ import annotations

from gatedfetch.failures import usage
from gatedfetch.outcome import Outcome
from tests.conftest import MODEL, Env

CONTRACT = ["status", "exit_code", "endpoint", "model", "revision", "local_dir", "token_source", "user",
            "token_role", "access_checked", "commit", "files"]


def test_the_document_has_the_contract_fields_in_order() -> None:
    doc = Outcome(endpoint="https://huggingface.co", model=MODEL, revision="main", local_dir="/x").done().to_json()
    assert list(doc) == [*CONTRACT, "warnings"]
    assert doc["status"] == "ready" and doc["exit_code"] == 0


def test_a_failure_before_the_flags_were_read_has_only_the_status_and_the_error() -> None:
    doc = Outcome().failed(usage("--nonsense")).to_json()
    assert list(doc) == ["status", "exit_code", "error", "warnings"]
    assert doc["exit_code"] == 2 and doc["error"]["kind"] == "usage"


def test_a_refusal_still_says_who_was_refused_for_which_commit(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--json", env={"HF_TOKEN": tokens["pending"]})
    assert r.code == 5
    doc = r.json()
    assert list(doc)[: len(CONTRACT)] == CONTRACT
    assert doc["status"] == "error" and doc["error"]["kind"] == "access_denied"
    assert doc["user"] == "pat" and doc["token_source"] == "env" and doc["access_checked"] is False
    assert doc["commit"] == env.hub.repo(MODEL).commit("main")
    assert doc["files"] == []


def test_check_reports_whether_the_copy_is_complete(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", "--json", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["status"] == "would_download" and doc["local_complete"] is False and doc["access_checked"] is True


def test_warnings_are_the_lines_printed(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--json", env={"HF_TOKEN": tokens["accepted_write"]})
    assert r.code == 0, r.err
    doc = r.json()
    assert any("a read token is enough" in w for w in doc["warnings"])
    assert all(f"warning: {w}" in r.err for w in doc["warnings"])


def test_prepare_without_a_token_says_it_needs_one(env: Env) -> None:
    r = env.run("--prepare", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["status"] == "needs_token" and doc["token_source"] is None


def test_the_demo_document_is_its_runs(env: Env) -> None:
    r = env.run("--demo", "pending", "--json", drop=("HF_ENDPOINT",), local_dir=False)
    assert r.code == 5
    doc = r.json()
    assert doc["error"]["kind"] == "access_denied" and doc["user"] == "pat"
    assert r.err.count("awaiting a review") == 1  # said once, by the run itself


def test_a_ready_run_says_where_its_time_went(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--json", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    t = r.json()["timings"]
    assert list(t) == ["environment", "checks", "transfer", "total"]
    assert t["environment"] > 0 and t["checks"] > 0 and t["transfer"] > 0  # environment: from setup.sh's start
    assert t["total"] >= t["environment"] + t["checks"] + t["transfer"] - 0.01  # and the manifest after
    last = r.err.strip().splitlines()[-1]
    assert last.startswith(f"ready in {t['total']:.1f} s: environment ") and "MB/s" in last
