"""setup.sh started as users start it: by sh, sourced, through a symlink with CDPATH set, read from standard
input, with a PYTHON that is no Python, over a .venv another tool left, stopped while it waits."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import Env, Result


def run(
    env: Env, argv: list[str], *, cwd: Path | None = None, extra: dict[str, str] | None = None,
    drop: tuple[str, ...] = (), stdin: bytes | None = None, timeout: float = 120,
) -> Result:
    """`argv` (a shell and its arguments, as a user types them) with the test's environment."""
    environ = env.base_environ()
    environ.update(extra or {})
    for name in drop:
        environ.pop(name, None)
    proc = subprocess.run(
        argv, cwd=cwd or env.project, env=environ, input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


# -- how the script is started ---------------------------------------------------------------------------


def test_sh_setup_sh_runs_itself_with_bash_and_completes(env: Env, tokens: dict[str, str]) -> None:
    r = run(env, ["sh", "setup.sh", "--check", "--local-dir", str(env.out_dir)],
            extra={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "Illegal option" not in r.err
    assert "would succeed" in r.text or "ready" in r.text


def test_source_refuses_in_one_line_and_leaves_the_shell_as_it_was(env: Env) -> None:
    script = (
        'before="$(set +o; shopt -p)"; source ./setup.sh --check; rc=$?; after="$(set +o; shopt -p)"; '
        '[[ "$before" == "$after" ]] && echo "options unchanged"; echo "rc=$rc"; false; echo "still here"'
    )
    r = run(env, ["bash", "-c", script])
    assert "options unchanged" in r.out and "rc=2" in r.out and "still here" in r.out, r.text
    assert r.err.strip().splitlines() == ["error: setup.sh is run, not sourced (it sets nothing in this shell); "
                                          "run: bash ./setup.sh"]


def test_dot_in_sh_refuses_and_the_shell_goes_on(env: Env) -> None:
    r = run(env, ["sh", "-c", '. ./setup.sh; echo "rc=$? still here"'])
    assert "rc=2 still here" in r.out, r.text
    assert "run: bash setup.sh" in r.err


def test_a_symlink_from_another_folder_with_cdpath_exported(env: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "scripts").mkdir(parents=True)  # a scripts/ folder there must not be the one used
    (elsewhere / "get-model").symlink_to(env.project / "setup.sh")
    r = run(env, ["bash", "get-model", "--check", "--local-dir", str(env.out_dir)], cwd=elsewhere,
            extra={"HF_TOKEN": tokens["accepted_read"], "CDPATH": f".:{tmp_path}"})
    assert r.code == 0, r.err
    assert "No such file" not in r.err


def test_read_from_standard_input_names_the_fix(env: Env) -> None:
    r = run(env, ["bash"], stdin=(env.project / "setup.sh").read_bytes())
    assert r.code == 2
    assert "cannot know the project folder" in r.err and "bash setup.sh" in r.err
    assert "unbound variable" not in r.err


def test_an_odd_variable_stops_before_huggingface_hub_is_imported(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"], "HF_HUB_ETAG_TIMEOUT": "1e12"})
    assert r.code == 2, r.err
    assert "HF_HUB_ETAG_TIMEOUT='1e12' is not a whole number of seconds" in r.err
    assert "unexpected" not in r.err and "Traceback" not in r.err
    assert not env.hub.requests  # nothing was asked


def test_a_pasted_endpoint_with_a_newline_works(env: Env, tokens: dict[str, str]) -> None:
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"], "HF_ENDPOINT": env.hub.url + "\n"})
    assert r.code == 0, r.err
    assert any("whoami" in q.path for q in env.hub.requests)
