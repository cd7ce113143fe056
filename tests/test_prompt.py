"""With a terminal and no token anywhere: a hidden prompt, and the stored login only on 'yes'."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import stat
import struct
import termios
import time

import pytest

from tests.conftest import Env, assert_no_secret


def run_in_terminal(
    env: Env,
    replies: list[tuple[bytes, bytes]],
    *args: str,
    extra: dict[str, str] | None = None,
    columns: int = 100,
) -> tuple[int, str]:
    """Run setup.sh on a pseudo-terminal; when the output shows a prompt, type its reply."""
    environ = env.base_environ()
    environ.update(extra or {})
    argv = ["bash", str(env.project / "setup.sh"), "--local-dir", str(env.out_dir), *args]
    pid, fd = pty.fork()
    if pid == 0:  # the child: setup.sh with the pty as its controlling terminal, 24x100 like a real one
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24 if columns else 0, columns, 0, 0))
        os.chdir(env.project)
        os.execve("/bin/bash", argv, environ)
    out = b""
    pending = list(replies)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if pending and pending[0][0] in out:
            os.write(fd, pending.pop(0)[1])
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_prompt_hides_the_token_and_saves_it_on_yes(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    code, out = run_in_terminal(env, [(b"token: ", token.encode() + b"\n"), (b"[y/N]", b"y\n")])
    assert code == 0, out
    assert "No Hugging Face token found" in out and "saved as the stored login" in out
    assert_no_secret(token, out)  # no echo, no print
    assert env.token_file.read_text().strip() == token
    assert stat.S_IMODE(env.token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(env.token_file.parent.stat().st_mode) == 0o700


def test_prompt_saves_nothing_on_no(env: Env, tokens: dict[str, str]) -> None:
    token = tokens["accepted_read"]
    code, out = run_in_terminal(env, [(b"token: ", token.encode() + b"\n"), (b"[y/N]", b"n\n")], "--check")
    assert code == 0, out
    assert not env.token_file.exists()
    for path in env.home.rglob("*"):
        if path.is_file():
            assert_no_secret(token, path.read_bytes().decode("latin-1"))


def test_empty_answer_exits_3(env: Env) -> None:
    code, out = run_in_terminal(env, [(b"token: ", b"\n")])
    assert code == 3, out


@pytest.mark.parametrize("columns", [100, 0], ids=["sized", "unsized"])
def test_terminal_gets_progress_bars(env: Env, tokens: dict[str, str], columns: int) -> None:
    env.hub.settings.throttle_bps = 4_000_000
    code, out = run_in_terminal(env, [], extra={"HF_TOKEN": tokens["accepted_read"]}, columns=columns)
    assert code == 0, out
    assert "model.pth" in out and "\r" in out and "%|" in out  # tqdm bars redraw in place on a terminal
    assert "model.pth: starting" not in out  # not the log lines
