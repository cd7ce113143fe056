"""Usage checked first: bad values end in exit 2 before any request; folders a download must not mix
with are refused; --check writes nothing; a listing that cannot land is exit 8 before any byte."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from gatedfetch import options
from tests.conftest import MODEL, Env, Main


def hub_calls(env: Env) -> list[str]:
    return [q.path for q in env.hub.requests if q.server == "hub"]


def test_setup_sh_ends_a_usage_error_with_exit_2_before_any_request(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--model", "../x", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 2, r.text
    assert "--model '../x'" in r.err
    assert "fix: pass it as owner/name" in r.err
    assert hub_calls(env) == []


@pytest.mark.parametrize("model", ["../x", "fishaudio/open--audio", "fishaudio/.hidden", "a/b c"])
def test_a_bad_repo_id_is_a_usage_error_before_any_request(main: Main, model: str) -> None:
    r = main("--model", model, "--token-stdin")
    assert r.code == 2, r.text
    assert f"--model {model!r}" in r.err
    assert "fix: pass it as owner/name" in r.err
    assert main.hub_calls() == []


@pytest.mark.parametrize("revision", ["main..dev", "/x", "a b", "refs/heads/", "x.lock", "@{1}"])
def test_a_bad_revision_is_a_usage_error_before_any_request(main: Main, revision: str) -> None:
    r = main("--revision", revision, "--token-stdin")
    assert r.code == 2, r.text
    assert "cannot be a branch, tag or commit name" in r.err
    assert main.hub_calls() == []


def test_a_commit_hash_and_a_pr_ref_are_fine_revisions(env: Env, tokens: dict[str, str]) -> None:
    sha = env.hub.repo(MODEL).commit("v1.0")
    r = env.run("--check", "--revision", sha, env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.text


def test_an_empty_local_dir_is_an_error(main: Main, tmp_path: Path) -> None:
    before = sorted(tmp_path.iterdir())
    r = main("--local-dir", "", "--token-stdin")
    assert r.code == 2, r.text
    assert "--local-dir is empty" in r.err
    assert sorted(tmp_path.iterdir()) == before and main.hub_calls() == []


@pytest.mark.parametrize("which", ["root", "home", "project"])
def test_root_home_and_project_folders_are_refused_unless_forced(main: Main, which: str) -> None:
    folder = {"root": Path("/"), "home": main.home, "project": options.PROJECT_DIR}[which]
    r = main("--check", "--local-dir", str(folder), "--token-stdin")
    assert r.code == 2, r.text
    assert "the model's files would mix with everything else there" in r.err
    assert "--force-local-dir" in r.err
    assert main.hub_calls() == []
    if which != "root":
        assert options.parse(["--check", "--force-local-dir", "--local-dir", str(folder)]).local_dir == folder


def test_a_forced_check_in_the_project_folder_goes_on_and_writes_nothing(env: Env, tokens: dict[str, str]) -> None:
    token = {"HF_TOKEN": tokens["accepted_read"]}
    forced = env.run("--check", "--force-local-dir", "--local-dir", str(env.project), env=token)
    assert forced.code == 0, forced.text
    assert "HF_TOKEN from the environment" in forced.err
    assert not (env.project / ".gatedfetch").exists()


def test_check_writes_nothing(env: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper"
    r = env.run("--check", "--local-dir", str(target), env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.text
    assert not (tmp_path / "new").exists()


def test_check_names_a_folder_it_could_not_write(env: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "my files"
    blocker.write_text("x")
    r = env.run("--check", "--local-dir", str(blocker / "sub"), env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 9, r.text
    assert "is not a folder" in r.err
    assert f"`ls -ld '{blocker / 'sub'}'`" in r.err  # a path in a fix command is quoted and absolute


def _add_file(env: Env, path: str, like: str = "config.json") -> None:
    repo = env.hub.repo(MODEL)
    files = repo.commits[repo.commit("main")]
    files[path] = dataclasses.replace(files[like], path=path)


def test_a_repo_path_inside_the_tools_own_records_is_refused(env: Env, tokens: dict[str, str]) -> None:
    _add_file(env, ".gatedfetch/manifest.json")
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 8, r.text
    assert "'.gatedfetch/manifest.json'" in r.err and "keeps its own records" in r.err
    assert not (env.out_dir / "model.pth").exists()


def test_a_path_that_is_both_file_and_folder_is_named_before_any_byte(env: Env, tokens: dict[str, str]) -> None:
    _add_file(env, "sub")
    _add_file(env, "sub/x")
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 8, r.text
    assert "'sub' and 'sub/x'" in r.err and "both a file and a folder" in r.err
    assert not any(p.is_file() for p in env.out_dir.rglob("*")) if env.out_dir.exists() else True


def test_no_zero_byte_leftover_after_a_size_mismatch(env: Env, tokens: dict[str, str]) -> None:
    env.hub.settings.listed_size_delta["codec.pth"] = 10  # listed bigger than what is served
    r = env.run(env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 8, r.text
    assert "size mismatch" in r.err
    left = [p for p in env.out_dir.rglob("*") if p.is_file() and os.path.getsize(p) == 0 and p.suffix != ".lock"]
    assert left == []
