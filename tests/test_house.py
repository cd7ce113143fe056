"""The house rules, checked in-process: flags parsed once and given in full, nothing swallowed (a manifest that
cannot be used, a marker that cannot be written, a git that fails), no import cycle."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from gatedfetch import cli, manifest, store

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("args", "meant"),
    [(["--js", "--check"], "--json"), (["--chek"], "--check"), (["--conections", "3"], "--connections")],
)
def test_an_abbreviated_or_misspelt_flag_is_refused_naming_the_one_meant(
    args: list[str], meant: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(args) == 2
    out, err = capfd.readouterr()
    assert f"(did you mean {meant}?)" in err
    assert out == ""  # --js is not --json: no document


def test_a_usage_error_with_json_written_in_full_is_a_document(capfd: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--json", "--chek"]) == 2
    doc = json.loads(capfd.readouterr().out)
    assert doc["exit_code"] == 2 and "--chek" in doc["error"]["message"]


def _entry(folder: Path) -> manifest.FileEntry:
    (folder / "a.bin").write_bytes(b"abc")
    return manifest.stamp(folder, manifest.FileEntry("a.bin", 3, manifest.sha256_of(folder / "a.bin"), True))


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{not json", "cannot be read (not valid JSON"),
        (json.dumps({"version": 99, "files": []}), "newer version of this tool (format 99, this one reads 1)"),
        (json.dumps({"version": 1, "nonsense": True}), "is not a manifest this tool wrote"),
    ],
)
def test_a_manifest_that_cannot_be_used_is_named(tmp_path: Path, content: str, said: str) -> None:
    path = manifest.path_of(tmp_path)
    path.parent.mkdir()
    path.write_text(content)
    heard: list[str] = []
    assert manifest.load(tmp_path, heard.append) is None
    assert len(heard) == 1 and str(path) in heard[0] and said in heard[0]
    assert "checked against the Hub's hashes" in heard[0]


def test_no_manifest_is_said_nothing_about(tmp_path: Path) -> None:
    heard: list[str] = []
    assert manifest.load(tmp_path, heard.append) is None
    assert heard == []


def test_a_good_manifest_loads(tmp_path: Path) -> None:
    m = manifest.Manifest("o/m", "main", "c" * 40, "https://huggingface.co", "", [_entry(tmp_path)])
    manifest.save(tmp_path, m)
    assert manifest.load(tmp_path) == m


def test_a_marker_that_cannot_be_written_is_said(tmp_path: Path) -> None:
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"abc")
    marker = tmp_path / "no-such-folder" / "m.json"
    note = store.write_marker(marker, "a.bin", dest, "0" * 64, True)
    assert note is not None and "a.bin: could not record its completion" in note
    assert store.write_marker(tmp_path / "m.json", "a.bin", dest, "0" * 64, True) is None


def test_a_failing_git_is_visible_with_debug_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gatedfetch import tokens

    env_file = tmp_path / ".env"
    env_file.write_text("HF_TOKEN=x\n")
    env_file.chmod(0o600)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git at all
    monkeypatch.delenv("GATEDFETCH_DEBUG", raising=False)
    assert tokens.env_file_warnings(env_file) == []
    monkeypatch.setenv("GATEDFETCH_DEBUG", "1")
    (said,) = tokens.env_file_warnings(env_file)
    assert said.startswith(f"could not ask git whether {env_file} is tracked or ignored")


def _imports(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (at the top or inside functions)."""
    mods: dict[str, Path] = {}
    for p in package.rglob("*.py"):
        parts = list(p.relative_to(package.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                subs = {f"{target}.{a.name}" for a in node.names} & mods.keys()
                graph[m] |= (subs or {target}) & mods.keys() - {m}
            elif isinstance(node, ast.Import):
                graph[m] |= {a.name for a in node.names} & mods.keys() - {m}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, as the modules on it; [] when there is none."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        path.pop()
        return []

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return []


def test_no_import_cycle_in_the_package() -> None:
    assert _cycle(_imports(ROOT / "gatedfetch")) == []


def test_the_cycle_finder_finds_one(tmp_path: Path) -> None:
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    assert _cycle(_imports(pkg)) == ["p.a", "p.b", "p.a"]


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "gatedfetch").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}



def test_the_bootstraps_exit_codes_are_the_tables() -> None:
    """scripts/bootstrap.py runs before the venv and repeats the codes it uses: they must mean what the table says."""
    from gatedfetch.failures.kinds import KINDS

    text = (ROOT / "scripts" / "bootstrap.py").read_text()
    codes = {name: int(code) for name, code in re.findall(r"^EXIT_([A-Z_]+) = (\d+)", text, re.MULTILINE)}
    named = {name.lower(): code for name, code in codes.items() if code in KINDS}
    assert named == {"failed": 1, "usage": 2, "hub_unreachable": 7, "integrity": 8, "local_disk": 9}
    kinds = {"failed": "unexpected", "local_disk": "disk"}
    for name, code in named.items():
        assert KINDS[code][0] == kinds.get(name, name), (name, code)


def test_setup_sh_reads_the_token_variables_the_helper_knows() -> None:
    from gatedfetch.secret import TOKEN_VARIABLES

    text = (ROOT / "setup.sh").read_text()
    assert f"for var in {' '.join(TOKEN_VARIABLES)}; do" in text
    assert "env " + " ".join(f"-u {v}" for v in TOKEN_VARIABLES) in text


def test_no_comment_names_a_file_that_is_not_there() -> None:
    """A comment or docstring that names a project file (gatedfetch/…py, scripts/…, tests/…py) names one that exists."""
    named = re.compile(r"\b((?:gatedfetch|scripts|tests)/[\w/]+\.(?:py|sh))\b")
    missing = []
    files = [*ROOT.glob("gatedfetch/**/*.py"), *ROOT.glob("scripts/*"), *ROOT.glob("tests/*.py"), ROOT / "setup.sh"]
    for path in files:
        for ref in named.findall(path.read_text()):
            if not (ROOT / ref).exists():
                missing.append(f"{path.relative_to(ROOT)} names {ref}")
    assert missing == []
