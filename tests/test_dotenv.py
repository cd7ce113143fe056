"""The .env as a user meets it, through `bash setup.sh`: never a hang or an unbounded read (a FIFO,
a link to /dev/zero, a huge file), the real cause named for odd bytes (which line, which byte; UTF-16
only when it is), and fix commands that work pasted from anywhere, even with a space in the path."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, assert_no_secret, copy_project

NO_HANG = 60  # seconds; a run that blocks on the .env fails the test by timing out


def write_env_bytes(env: Env, data: bytes) -> Path:
    path = env.project / ".env"
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.fixture
def fifo_env(env: Env) -> Iterator[Path]:
    """A FIFO named .env. Afterwards a reader still blocked on it (a regression) is given end-of-file,
    so a failed test leaves no process behind."""
    path = env.project / ".env"
    os.mkfifo(path)
    yield path
    with contextlib.suppress(OSError):  # ENXIO: no reader waits on it, as it should be
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def higher_source(how: str, token: str) -> tuple[tuple[str, ...], dict[str, str], bytes | None]:
    """Run arguments, environment and stdin giving `token` from a source before the .env."""
    if how == "HF_TOKEN":
        return ("--check",), {"HF_TOKEN": token}, None
    return ("--check", "--token-stdin"), {}, token.encode()


# --- only a regular file, at most 1 MiB, never blocking ---------------------------------------


@pytest.mark.parametrize("how", ["HF_TOKEN", "--token-stdin"])
def test_fifo_env_does_not_hang_when_a_source_before_it_has_the_token(
    env: Env, fifo_env: Path, tokens: dict[str, str], how: str
) -> None:
    args, extra, stdin = higher_source(how, tokens["accepted_read"])
    r = env.run(*args, env=extra, stdin=stdin, timeout=NO_HANG)
    assert r.code == 0, r.err
    assert f"warning: {fifo_env} is a FIFO, not a regular file: not read" in r.err
    assert_no_secret(tokens["accepted_read"], r.text)


def test_fifo_env_and_no_other_token_exits_3_saying_it_is_a_fifo(env: Env, fifo_env: Path) -> None:
    r = env.run("--check", timeout=NO_HANG)
    assert r.code == 3, r.err
    assert f"error: {fifo_env} is a FIFO, not a regular file: it was not read" in r.err
    assert "Traceback" not in r.text


def test_env_linked_to_dev_zero_is_refused_as_a_device_not_read_into_memory(env: Env) -> None:
    (env.project / ".env").symlink_to("/dev/zero")
    r = env.run("--check", timeout=NO_HANG)
    assert r.code == 3, r.err
    assert "is a character device (a link to /dev/zero), not a regular file" in r.err
    assert "MemoryError" not in r.text and "Traceback" not in r.text


def test_env_linked_to_dev_zero_costs_a_warning_when_hf_token_is_set(env: Env, tokens: dict[str, str]) -> None:
    (env.project / ".env").symlink_to("/dev/zero")
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]}, timeout=NO_HANG)
    assert r.code == 0, r.err
    assert "(a link to /dev/zero), not a regular file: not read (HF_TOKEN from the environment is used)" in r.err


def test_fifo_as_the_stored_login_does_not_hang_when_hf_token_is_set(env: Env, tokens: dict[str, str]) -> None:
    env.token_file.parent.mkdir(parents=True)
    os.mkfifo(env.token_file)
    try:
        r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]}, timeout=NO_HANG)
    finally:
        with contextlib.suppress(OSError):  # a reader blocked on it (a regression) gets end-of-file
            os.close(os.open(env.token_file, os.O_WRONLY | os.O_NONBLOCK))
    assert r.code == 0, r.err
    assert f"the stored login {env.token_file} is a FIFO, not a regular file: not read" in r.err


def test_env_larger_than_1_mib_is_refused_even_with_a_token_in_it(env: Env, tokens: dict[str, str]) -> None:
    filler = b"# " + b"x" * 1021 + b"\n"  # 1 KiB a line
    write_env_bytes(env, filler * 2048 + f"HF_TOKEN={tokens['accepted_read']}\n".encode())
    r = env.run("--check", timeout=NO_HANG)
    assert r.code == 3, r.err
    assert f"{env.project / '.env'} is larger than 1 MiB: it was not read" in r.err
    assert_no_secret(tokens["accepted_read"], r.text)


def test_env_of_exactly_1_mib_is_still_read(env: Env, tokens: dict[str, str]) -> None:
    line = f"HF_TOKEN={tokens['accepted_read']}\n".encode()
    filler = b"#" * (1024 * 1024 - len(line) - 1) + b"\n"
    path = write_env_bytes(env, filler + line)
    assert path.stat().st_size == 1024 * 1024
    r = env.run("--check")
    assert r.code == 0, r.err
    assert f"token: HF_TOKEN in {path}" in r.err


@pytest.mark.parametrize("kind", ["FIFO", "directory", "character device"])
def test_env_file_flag_naming_no_regular_file_exits_2_saying_what_it_is(env: Env, kind: str) -> None:
    target = env.project / "odd"
    if kind == "FIFO":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    else:
        target = Path("/dev/null")
    r = env.run("--check", "--env-file", str(target), timeout=NO_HANG)
    assert r.code == 2, r.err
    assert f"--env-file {target} is a {kind}, not a regular file" in r.err
    assert "no such file" not in r.err


def test_env_file_flag_naming_nothing_still_says_no_such_file(env: Env) -> None:
    r = env.run("--check", "--env-file", str(env.project / "missing.env"))
    assert r.code == 2
    assert "no such file" in r.err


# --- bytes: the line and the cause, UTF-16 only when it is ------------------------------------


def test_latin1_byte_in_a_comment_warns_with_its_line_and_the_token_is_used(env: Env, tokens: dict[str, str]) -> None:
    path = write_env_bytes(env, b"OTHER=1\n# caf\xe9 au lait\nHF_TOKEN=" + tokens["accepted_read"].encode() + b"\n")
    r = env.run("--check")
    assert r.code == 0, r.err
    assert f"{path}: line 2 holds a byte that is not UTF-8 (0xe9" in r.err
    assert f"token: HF_TOKEN in {path}" in r.err


def test_nul_byte_in_the_token_line_is_named_with_its_line_not_as_utf16(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    path = write_env_bytes(env, b"# mine\nHF_TOKEN=" + token[:12].encode() + b"\x00" + token[12:].encode() + b"\n")
    r = env.run("--check")
    assert r.code == 4, r.err
    assert f"{path}: line 2, the HF_TOKEN line, holds a NUL byte (0x00)" in r.err
    assert "UTF-16" not in r.err
    assert "write line 2 again as HF_TOKEN=hf_..." in r.err
    assert_no_secret(token, r.text)


def test_latin1_byte_in_the_token_line_is_named_with_its_line(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    path = write_env_bytes(env, b"HF_TOKEN=" + token.encode() + b"\xa0\n")
    r = env.run("--check")
    assert r.code == 4, r.err
    assert f"{path}: line 1, the HF_TOKEN line, holds a byte that is not UTF-8 (0xa0" in r.err
    assert_no_secret(token, r.text)


@pytest.mark.parametrize(("codec", "named"), [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16LE")])
def test_utf16_env_is_named_utf16_with_the_command_to_resave_it(
    env: Env, tokens: dict[str, str], codec: str, named: str
) -> None:
    path = write_env_bytes(env, f"# mine\r\nHF_TOKEN={tokens['accepted_read']}\r\n".encode(codec))
    r = env.run("--check")
    assert r.code == 4, r.err
    assert f"{path} is saved as {named}" in r.err
    assert f"iconv -f {named} -t UTF-8 {path} >" in r.err
    assert_no_secret(tokens["accepted_read"], r.text)


def test_utf16_env_costs_a_warning_when_hf_token_is_set(env: Env, tokens: dict[str, str]) -> None:
    write_env_bytes(env, f"HF_TOKEN={tokens['accepted_read']}\n".encode("utf-16"))
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert "is saved as UTF-16" in r.err and "not used (HF_TOKEN from the environment is used)" in r.err


def test_env_holding_a_token_readable_by_others_is_warned_even_when_hf_token_wins(
    env: Env, tokens: dict[str, str]
) -> None:
    path = env.write_env(f"HF_TOKEN={tokens['accepted_read']}\n")
    path.chmod(0o644)
    r = env.run("--check", env={"HF_TOKEN": tokens["accepted_read"]})
    assert r.code == 0, r.err
    assert f"{path} is readable by other users: run `chmod 600 {path}`" in r.err


# --- fix commands: absolute, quoted, they work pasted anywhere --------------------------------


@pytest.fixture
def spaced(env: Env, tmp_path: Path) -> Env:
    """The same run, from a project copy under a folder with a space in its name."""
    project = copy_project(tmp_path / "my proj")
    return Env(project=project, home=env.home, hub=env.hub, out_dir=tmp_path / "out")


def run_fix(command: str, cwd: Path) -> None:
    """Run a fix command as a user pasting it would, from another folder."""
    subprocess.run(["bash", "-c", command], cwd=cwd, check=True, capture_output=True, timeout=30)


def test_chmod_fix_quotes_a_path_with_a_space_and_works(spaced: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    path = spaced.write_env(f"HF_TOKEN={tokens['accepted_read']}\n")
    path.chmod(0o644)
    r = spaced.run("--check")
    assert r.code == 0, r.err
    command = f"chmod 600 {shlex.quote(str(path))}"
    assert f"run `{command}`" in r.err
    assert "'" in command
    run_fix(command, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_token_fix_copies_the_example_by_absolute_quoted_paths(spaced: Env, tmp_path: Path) -> None:
    r = spaced.run("--check")
    assert r.code == 3, r.err
    found = re.search(r"^\s*(cp .*)$", r.err, re.MULTILINE)
    assert found, r.err
    command = found.group(1).strip()
    example, dotenv = spaced.project / ".env.example", spaced.project / ".env"
    assert command == f"cp {shlex.quote(str(example))} {shlex.quote(str(dotenv))}"
    assert f"`chmod 600 {shlex.quote(str(dotenv))}`" in r.err
    run_fix(command, tmp_path)
    assert dotenv.read_bytes() == example.read_bytes()
