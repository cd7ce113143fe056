"""Messages that tell the truth, checked in-process: the shadow hint names the variable that won, lines said by
two threads never share a line, a disk shortfall shows in the unit that makes it visible."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from gatedfetch import failures, tokens
from gatedfetch.report import Reporter
from gatedfetch.units import human_bytes, shortfall

A, B = "hf_" + "a" * 34, "hf_" + "b" * 34


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    path = tmp_path / "token"
    path.write_text(B)
    path.chmod(0o600)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(path))
    return path


@pytest.mark.parametrize("variable", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
def test_the_shadow_hint_unsets_the_variable_that_won(stored: Path, tmp_path: Path, variable: str) -> None:
    res = tokens.resolve(None, "", {variable: A}, tmp_path / ".env")
    assert res.found is not None and res.found.variable == variable
    assert res.warnings == [
        f"{variable} from the environment is used; it hides a different token in the stored login ({stored}) "
        f"(to use that one: `unset {variable}`)"
    ]


def test_a_piped_token_keeps_the_name_of_its_variable(stored: Path, tmp_path: Path) -> None:
    # setup.sh pipes HUGGING_FACE_HUB_TOKEN's value and says so with --token-from
    res = tokens.resolve(A, "HUGGING_FACE_HUB_TOKEN from the environment", {}, tmp_path / ".env", "env",
                         "HUGGING_FACE_HUB_TOKEN")
    assert res.found is not None and res.found.kind == "env"
    assert res.warnings and res.warnings[0].endswith("(to use that one: `unset HUGGING_FACE_HUB_TOKEN`)")


def test_a_dotenv_token_shadowing_the_login_says_to_remove_it(stored: Path, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"HF_TOKEN={A}\n")
    res = tokens.resolve(None, "", {}, env_file)
    assert res.warnings[-1].endswith("(to use that one: `remove HF_TOKEN from the .env file`)")


def test_lines_said_by_two_threads_at_once_never_share_a_line() -> None:
    class Slow(io.StringIO):
        """Yields between writes, as a terminal or pipe can: `print` writing text and newline apart interleaves."""

        def write(self, s: str) -> int:
            n = super().write(s)
            threading.Event().wait(0.0005)
            return n

    err = Slow()
    rep = Reporter(err=err)
    lines = [f"hub: retry {i} of the file list" for i in range(20)] + [f"hub: retry {i} of whoami" for i in range(20)]

    def say(part: list[str]) -> None:
        for line in part:
            rep.info(line)

    threads = [threading.Thread(target=say, args=(lines[:20],)), threading.Thread(target=say, args=(lines[20:],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(err.getvalue().splitlines()) == sorted(lines)


@pytest.mark.parametrize(
    ("needed", "free", "said"),
    [
        (3_600_000_000, 3_595_000_000, "3600.0 MB needed, 3595.0 MB free (5.0 MB short)"),
        (3_600_000_000, 1_000_000_000, "3.6 GB needed, 1.0 GB free (2.6 GB short)"),
        (5_000, 1_000, "5.0 kB needed, 1.0 kB free (4.0 kB short)"),
        (700, 600, "700 B needed, 600 B free (100 B short)"),
    ],
)
def test_a_disk_shortfall_shows_in_the_unit_of_the_difference(needed: int, free: int, said: str) -> None:
    assert shortfall(needed, free) == said
    assert said in failures.no_space("/data", needed, free).message


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (12, 1_500, 2_500_000, 3_600_000_000)] == ["12 B", "1.5 kB", "2.5 MB", "3.6 GB"]
