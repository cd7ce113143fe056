"""scripts/leak_audit.py finds tokens in history, git history, readable files and a tracked .env."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, assert_no_secret

AUDIT = REPO_ROOT / "scripts" / "leak_audit.py"


def audit(project: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AUDIT), "--project", str(project), "--home", str(home)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
    )


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


def make(tmp_path: Path) -> tuple[Path, Path]:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    git(project, "init", "-q")
    (project / "README.md").write_text("hello\n")
    (project / "README.md").chmod(0o644)
    git(project, "add", "README.md")
    git(project, "commit", "-qm", "init")
    return project, home


def test_clean_project_exits_0(tmp_path: Path) -> None:
    project, home = make(tmp_path)
    r = audit(project, home)
    assert r.returncode == 0, r.stdout + r.stderr


def test_token_in_shell_history_is_found_masked(tmp_path: Path, tokens: dict[str, str]) -> None:
    project, home = make(tmp_path)
    token = tokens["accepted_read"]
    (home / ".bash_history").write_text(f"ls\nhf auth login --token {token}\n")
    r = audit(project, home)
    assert r.returncode == 1
    assert f"hf_****{token[-4:]}  {home / '.bash_history'}:2" in r.stdout
    assert "Invalidate" in r.stderr
    assert_no_secret(token, r.stdout + r.stderr)


def test_token_deleted_from_git_is_still_found_in_history(tmp_path: Path, tokens: dict[str, str]) -> None:
    project, home = make(tmp_path)
    token = tokens["pending"]
    cfg = project / "config.py"
    cfg.write_text(f"x = 1\nTOKEN = '{token}'\n")
    cfg.chmod(0o600)
    git(project, "add", "config.py")
    git(project, "commit", "-qm", "oops")
    cfg.write_text("x = 1\n")
    git(project, "commit", "-qam", "remove")
    r = audit(project, home)
    assert r.returncode == 1
    assert "git history: config.py in commit" in r.stdout and ":2" in r.stdout
    assert_no_secret(token, r.stdout + r.stderr)


def test_token_in_file_readable_by_others_is_found(tmp_path: Path, tokens: dict[str, str]) -> None:
    project, home = make(tmp_path)
    notes = project / "notes.txt"
    notes.write_text(f"token {tokens['rejected']}\n")
    notes.chmod(0o644)
    r = audit(project, home)
    assert r.returncode == 1 and f"chmod 600 {notes}" in r.stdout
    notes.chmod(0o600)
    r = audit(project, home)
    assert r.returncode == 0
    assert "finding" not in (r.stdout + r.stderr)


def test_tracked_env_is_found(tmp_path: Path) -> None:
    project, home = make(tmp_path)
    (project / ".env").write_text("HF_TOKEN=\n")
    (project / ".env").chmod(0o600)
    git(project, "add", "-f", ".env")
    r = audit(project, home)
    assert r.returncode == 1 and "git rm --cached .env" in r.stdout


def test_placeholders_are_not_findings(tmp_path: Path) -> None:
    project, home = make(tmp_path)
    (home / ".bash_history").write_text("export HF_TOKEN=hf_" + "x" * 34 + "\n")
    r = audit(project, home)
    assert r.returncode == 0
    assert "finding" not in (r.stdout + r.stderr)
