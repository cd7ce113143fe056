"""`bash setup.sh` end to end against the local test Hub: sources, exit codes, flags, files."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import MODEL, Env, assert_no_secret, hub_content

# --- the happy path, from each token source -------------------------------------------------


def test_env_token_downloads_every_file_verified(env: Env, tokens: dict[str, str]) -> None:
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "token: HF_TOKEN from the environment" in r.err
    assert "user: alice (token role: read)" in r.err
    commit = env.hub.repo(MODEL).commit("main")
    assert commit[:10] in r.err and str(env.out_dir) in r.err
    for path, data in hub_content(env.hub).items():
        assert (env.out_dir / path).read_bytes() == data, path
    assert_no_secret(tokens["accepted_read"], r.text)


def test_dotenv_beside_setup_sh_is_used(env: Env, tokens: dict[str, str]) -> None:
    env.write_env(f"# my token\nexport HF_TOKEN='{tokens['accepted_read']}'\n")
    r = env.run()
    assert r.code == 0, r.err
    assert f"token: HF_TOKEN in {env.project / '.env'}" in r.err


def test_env_file_flag_reads_that_file(env: Env, tokens: dict[str, str]) -> None:
    other = env.project / "secrets" / "hf.env"
    other.parent.mkdir()
    other.write_text(f"HF_TOKEN={tokens['accepted_read']}\r\n")
    other.chmod(0o600)
    r = env.run("--env-file", str(other))
    assert r.code == 0, r.err
    assert f"HF_TOKEN in {other}" in r.err


def test_stored_login_is_used(env: Env, tokens: dict[str, str]) -> None:
    path = env.store_login(tokens["accepted_read"] + "\n")
    r = env.run()
    assert r.code == 0, r.err
    assert f"token: the stored login ({path})" in r.err


def test_stored_login_under_hf_home(env: Env, tokens: dict[str, str]) -> None:
    hf_home = env.home / "elsewhere"
    hf_home.mkdir()
    (hf_home / "token").write_text(tokens["accepted_read"])
    r = env.run(env={"HF_HOME": str(hf_home)})
    assert r.code == 0, r.err
    assert f"stored login ({hf_home / 'token'})" in r.err


def test_stored_login_at_hf_token_path(env: Env, tokens: dict[str, str]) -> None:
    path = env.home / "custom-token"
    path.write_text(tokens["accepted_read"])
    r = env.run(env={"HF_TOKEN_PATH": str(path)})
    assert r.code == 0, r.err
    assert f"stored login ({path})" in r.err


def test_token_stdin(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--token-stdin", stdin=(tokens["accepted_read"] + "\n").encode())
    assert r.code == 0, r.err
    assert "token: standard input (--token-stdin)" in r.err


def test_older_env_variable_is_honoured(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", env={"HUGGING_FACE_HUB_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "HUGGING_FACE_HUB_TOKEN from the environment" in r.err


# --- precedence ------------------------------------------------------------------------------


def test_stdin_wins_over_environment(env: Env, tokens: dict[str, str]) -> None:
    r = env.run(
        "--check", "--token-stdin", stdin=tokens["accepted_read"].encode(), env={"HF_TOKEN": tokens["invalid"]}
    )
    assert r.code == 0, r.err
    assert "standard input" in r.err


def test_environment_wins_over_dotenv_and_stored(env: Env, tokens: dict[str, str]) -> None:
    env.write_env(f"HF_TOKEN={tokens['invalid']}\n")
    env.store_login(tokens["invalid"])
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "HF_TOKEN from the environment" in r.err


def test_dotenv_wins_over_stored_login(env: Env, tokens: dict[str, str]) -> None:
    env.write_env(f"HF_TOKEN={tokens['accepted_read']}\n")
    env.store_login(tokens["invalid"])
    r = env.run("--check")
    assert r.code == 0, r.err
    assert "HF_TOKEN in" in r.err


def test_empty_values_count_as_unset(env: Env, tokens: dict[str, str]) -> None:
    env.write_env("HF_TOKEN=\n")
    env.store_login(tokens["accepted_read"])
    r = env.run("--check", env={"HF_TOKEN": ""})
    assert r.code == 0, r.err
    assert "stored login" in r.err


def test_stale_environment_token_shadowing_login_is_named(env: Env, tokens: dict[str, str]) -> None:
    env.store_login(tokens["accepted_read"])
    r = env.run("--check", env={"HF_TOKEN": tokens["invalid"]})
    assert r.code == 4
    assert "hides a different token in the stored login" in r.err
    assert "unset HF_TOKEN" in r.err
    assert_no_secret(tokens["invalid"], r.text)
    assert_no_secret(tokens["accepted_read"], r.text)


# --- exit codes -----------------------------------------------------------------------------


def test_no_token_exits_3_naming_all_three_ways(env: Env) -> None:
    r = env.run()
    assert r.code == 3
    assert "hf auth login" in r.err and "export HF_TOKEN=" in r.err and ".env.example" in r.err
    assert "Traceback" not in r.text


def test_invalid_token_exits_4_with_tokens_page(env: Env, tokens: dict[str, str]) -> None:
    r = env.run(env={"HF_TOKEN": tokens["invalid"]})
    assert r.code == 4
    assert "https://huggingface.co/settings/tokens" in r.err
    assert "hf_****" in r.err
    assert not env.out_dir.joinpath("model.pth").exists()


def test_licence_not_accepted_exits_5_with_model_page(env: Env, tokens: dict[str, str]) -> None:
    r = env.run(env={"HF_TOKEN": tokens["not_accepted"]})
    assert r.code == 5
    assert "has not accepted the licence" in r.err
    assert f"https://huggingface.co/{MODEL}" in r.err
    assert [q for q in env.hub.requests if q.server == "cdn"] == []


def test_missing_repo_exits_6_naming_it(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--model", "fishaudio/no-such-model", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 6
    assert "fishaudio/no-such-model" in r.err


def test_unreachable_hub_exits_7_naming_endpoint(env: Env, tokens: dict[str, str]) -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"], "HF_ENDPOINT": dead})
    assert r.code == 7
    assert dead in r.err
    assert "Traceback" not in r.text


def test_corrupted_byte_exits_8_and_nothing_bad_lands(env: Env, tokens: dict[str, str]) -> None:
    env.hub.add_fault("model.pth", flip_at=1000, times=None, server="any", method="GET")
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 8
    assert "model.pth" in r.err and "mismatch" in r.err
    expected = env.hub.repo(MODEL).files()["model.pth"].sha256
    assert f"expected {expected[:12]}" in r.err  # the two hash prefixes, expected vs got
    assert not (env.out_dir / "model.pth").exists()
    env.hub.clear_faults()
    again = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert again.code == 0, again.err
    assert (env.out_dir / "model.pth").read_bytes() == hub_content(env.hub)["model.pth"]


def test_unwritable_folder_exits_9_naming_it(env: Env, tokens: dict[str, str]) -> None:
    target = "/proc/gatedfetch-cannot-write-here"
    r = env.run("--local-dir", target, env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 9
    assert target in r.err


def test_bad_flag_exits_2_naming_it(env: Env) -> None:
    r = env.run("--frobnicate")
    assert r.code == 2
    assert "--frobnicate" in r.err


# --- flags ----------------------------------------------------------------------------------


def test_check_downloads_nothing_and_says_it_would_succeed(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "would succeed" in r.err
    assert not any("/resolve/" in q.path and q.method == "GET" for q in env.hub.requests)
    assert not (env.out_dir / "model.pth").exists()


def test_check_fails_like_the_real_run(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", env={"HF_TOKEN": tokens["pending"]})
    assert r.code == 5
    assert "awaiting" in r.err and "review" in r.err  # the same words as the download run's refusal
    assert not (env.out_dir / "model.pth").exists()


def test_json_is_one_document_with_the_contract_fields(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--json", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    doc = r.json()
    for key in ("status", "exit_code", "token_source", "user", "token_role", "endpoint", "model", "revision",
                "commit", "local_dir", "files"):
        assert key in doc, key
    assert doc["status"] == "ready" and doc["exit_code"] == 0 and doc["user"] == "alice"
    assert doc["commit"] == env.hub.repo(MODEL).commit("main")
    paths = {f["path"]: f for f in doc["files"]}
    expected = env.hub.repo(MODEL).files("main")
    assert set(paths) == set(expected)
    for p, spec in expected.items():
        assert paths[p]["size"] == spec.size and paths[p]["sha256"] == spec.sha256 and paths[p]["verified"] is True
    assert "token:" in r.err  # human text stays on stderr
    assert_no_secret(tokens["accepted_read"], r.out)


def test_json_on_failure_carries_the_error(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--json", env={"HF_TOKEN": tokens["pending"]})
    assert r.code == 5
    doc = r.json()
    assert doc["status"] == "error" and doc["exit_code"] == 5
    assert doc["error"]["kind"] == "access_denied" and doc["error"]["fix"]


def test_quiet_prints_nothing_on_success(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--quiet", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert r.err.strip() == ""


def test_quiet_still_prints_errors(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--quiet", env={"HF_TOKEN": tokens["pending"]})
    assert r.code == 5 and "error:" in r.err


def test_revision_tag_records_its_commit(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--json", "--revision", "v1.0", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    commit = env.hub.repo(MODEL).commit("v1.0")
    assert r.json()["commit"] == commit
    manifest = json.loads((env.out_dir / ".gatedfetch" / "manifest.json").read_text())
    assert manifest["commit"] == commit and manifest["revision"] == "v1.0"
    assert (env.out_dir / "config.json").read_bytes() == hub_content(env.hub, "v1.0")["config.json"]


def test_default_folder_is_checkpoints_beside_setup_sh(env: Env, tokens: dict[str, str]) -> None:
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]}, local_dir=False)
    assert r.code == 0, r.err
    assert (env.project / "checkpoints" / "openaudio-s1-mini" / "model.pth").is_file()


# --- what crosses the wire ------------------------------------------------------------------


def test_token_never_reaches_the_cdn(env: Env, tokens: dict[str, str]) -> None:
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    cdn = [q for q in env.hub.requests if q.server == "cdn"]
    assert cdn, "the big files should have come from the CDN"
    for q in cdn:
        assert "authorization" not in q.headers
        assert_no_secret(tokens["accepted_read"], json.dumps(q.headers), q.path)


def test_rerun_is_one_request_and_no_transfer(env: Env, tokens: dict[str, str]) -> None:
    first = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert first.code == 0, first.err
    env.hub.clear_requests()
    again = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert again.code == 0, again.err
    assert "up to date" in again.err
    real = [q for q in env.hub.requests if "agent-harnesses" not in q.path]
    assert len(real) == 1, [q.path for q in real]


def test_rerun_shortcut_reports_no_user_it_did_not_check(env: Env, tokens: dict[str, str]) -> None:
    assert env.run(env={"HF_TOKEN": tokens["accepted_read"]}).code == 0
    other = env.run("--json", env={"HF_TOKEN": tokens["not_accepted"]})
    assert other.code == 0, other.err
    doc = other.json()
    assert doc["user"] is None and doc["access_checked"] is False
    assert "alice" not in other.text
    assert "access was not checked again: `bash setup.sh --check` does" in other.err
    check = env.run("--check", env={"HF_TOKEN": tokens["not_accepted"]})
    assert check.code == 5, check.text


def test_offline_with_complete_copy_exits_0_without_network(env: Env, tokens: dict[str, str]) -> None:
    assert env.run(env={"HF_TOKEN": tokens["accepted_read"]}).code == 0
    env.hub.clear_requests()
    r = env.run(env={"HF_HUB_OFFLINE": "1"})
    assert r.code == 0, r.err
    assert env.hub.requests == []


def test_offline_with_incomplete_copy_exits_7(env: Env) -> None:
    r = env.run(env={"HF_HUB_OFFLINE": "1"})
    assert r.code == 7
    assert "HF_HUB_OFFLINE" in r.err


def test_offline_after_a_file_was_damaged_exits_7(env: Env, tokens: dict[str, str]) -> None:
    assert env.run(env={"HF_TOKEN": tokens["accepted_read"]}).code == 0
    with (env.out_dir / "config.json").open("ab") as f:
        f.write(b" ")
    r = env.run(env={"HF_HUB_OFFLINE": "1"})
    assert r.code == 7
    assert "config.json" in r.err


def test_damaged_file_is_fetched_again(env: Env, tokens: dict[str, str]) -> None:
    assert env.run(env={"HF_TOKEN": tokens["accepted_read"]}).code == 0
    (env.out_dir / "codec.pth").write_bytes(b"truncated")
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert (env.out_dir / "codec.pth").read_bytes() == hub_content(env.hub)["codec.pth"]


# --- mirrors ----------------------------------------------------------------------------------


def test_mirror_without_whoami_or_auth_check_still_verifies(env: Env, tokens: dict[str, str]) -> None:
    env.hub.settings.whoami = False
    env.hub.settings.auth_check = "missing"
    r = env.run("--json", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "has no whoami" in r.err and "access check" in r.err
    assert all(f["verified"] for f in r.json()["files"])


def test_mirror_saying_repo_not_found_on_auth_check_carries_on(env: Env, tokens: dict[str, str]) -> None:
    env.hub.settings.auth_check = "repo_not_found"
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err


def test_mirror_refusing_files_for_licence_is_exit_5(env: Env, tokens: dict[str, str]) -> None:
    env.hub.settings.auth_check = "missing"
    env.hub.settings.mirror_gated_refusal = True
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 5, r.err


def test_plain_http_endpoint_elsewhere_is_refused(env: Env, tokens: dict[str, str]) -> None:
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"], "HF_ENDPOINT": "http://mirror.example.com"})
    assert r.code == 2
    assert "--allow-insecure-endpoint" in r.err


def test_non_hub_endpoint_is_named(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0
    assert "the token is sent to 127.0.0.1" in r.err


def test_no_output_contains_a_traceback_for_any_failure(env: Env, tokens: dict[str, str]) -> None:
    for args, extra in (
        ((), {"HF_TOKEN": tokens["invalid"]}),
        (("--revision", "nope"), {"HF_TOKEN": tokens["accepted_read"]}),
        (("--local-dir", "/proc/x"), {"HF_TOKEN": tokens["accepted_read"]}),
    ):
        r = env.run(*args, env=extra)
        assert r.code != 0 and "Traceback" not in r.text


def test_written_files_hold_no_token(env: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "ready:" in r.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert_no_secret(tokens["accepted_read"], path.read_bytes().decode("latin-1"))


def test_check_reports_a_complete_local_copy(env: Env, tokens: dict[str, str]) -> None:
    assert env.run(env={"HF_TOKEN": tokens["accepted_read"]}).code == 0
    r = env.run("--check", "--json", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "the local copy is complete" in r.err
    assert r.json()["local_complete"] is True


def test_allow_insecure_endpoint_lets_plain_http_through(env: Env) -> None:
    # No token, so nothing is sent anywhere: the run gets past the endpoint check and stops at exit 3.
    r = env.run("--allow-insecure-endpoint", env={"HF_ENDPOINT": "http://mirror.example.com"})
    assert r.code == 3, r.err
    assert "the token is sent to mirror.example.com" in r.err
