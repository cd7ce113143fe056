"""Bytes already on the machine, as a user meets them through `bash setup.sh`: a model that `hf download`
left in huggingface_hub's cache, a cached blob gone bad, another folder given with --reuse-from, hard
links with --link, a copy killed halfway, and --also-cache read back by huggingface_hub offline."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatedfetch.localhub import TOKENS, default_world
from gatedfetch.store import partial_path
from tests.conftest import MODEL, Env, copy_project, hub_content
from tests.jobs_hub import TestHub

TOKEN = TOKENS["accepted_read"]
HF = Path(sys.executable).parent / "hf"  # the `hf` CLI of the interpreter running the tests


def hf_home(env: Env) -> Path:
    return env.home / ".cache" / "huggingface"


def repo_cache(env: Env) -> Path:
    return hf_home(env) / "hub" / "models--fishaudio--openaudio-s1-mini"


def hf_environ(env: Env, **extra: str) -> dict[str, str]:
    environ = env.base_environ()
    environ.update(HF_HOME=str(hf_home(env)), **extra)
    return environ


def hf_download(env: Env) -> None:
    """Fill huggingface_hub's cache the way a user does: the real `hf download`, from the test Hub."""
    proc = subprocess.run(
        [str(HF), "download", MODEL],
        env=hf_environ(env, HF_TOKEN=TOKEN),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def file_gets(hub: TestHub) -> list[str]:
    """Every request that transferred file bytes: a GET of /resolve on the Hub, any GET on the CDN."""
    return [q.path for q in hub.requests if q.method == "GET" and (q.server == "cdn" or "/resolve/" in q.path)]


def by_path(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    files = doc["files"]
    assert isinstance(files, list)
    return {f["path"]: f for f in files}


def assert_same_files(folder: Path, hub: TestHub) -> None:
    for path, data in hub_content(hub).items():
        assert (folder / path).read_bytes() == data, path


def test_a_model_hf_download_cached_is_copied_from_the_cache_and_nothing_is_downloaded(env: Env) -> None:
    hf_download(env)
    blobs = {p.name: p.read_bytes() for p in (repo_cache(env) / "blobs").iterdir()}
    env.hub.clear_requests()
    r = env.run("--json", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    assert file_gets(env.hub) == []
    files = by_path(r.json())
    assert set(files) == set(hub_content(env.hub))
    assert all(f["source"] == "hf-cache" and f["fetched_bytes"] == 0 for f in files.values()), files
    assert_same_files(env.out_dir, env.hub)
    assert "reused from the Hugging Face cache, 0 B downloaded" in r.err
    # copies, not links; and the cache is as it was
    blob = repo_cache(env) / "blobs" / env.hub.repo(MODEL).files()["model.pth"].sha256
    assert not (env.out_dir / "model.pth").samefile(blob)
    assert {p.name: p.read_bytes() for p in (repo_cache(env) / "blobs").iterdir()} == blobs
    saved = json.loads((env.out_dir / ".gatedfetch" / "manifest.json").read_text())
    assert {f["source"] for f in saved["files"]} == {"hf-cache"}


def test_a_cached_blob_with_one_flipped_byte_is_left_alone_and_the_file_downloaded(env: Env) -> None:
    hf_download(env)
    big = env.hub.repo(MODEL).files()["model.pth"]
    blob = repo_cache(env) / "blobs" / big.sha256
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    before = (blob.read_bytes(), blob.stat().st_mtime_ns, blob.stat().st_mode)
    env.hub.clear_requests()
    r = env.run("--json", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    files = by_path(r.json())
    assert files["model.pth"]["source"] == "download" and files["model.pth"]["fetched_bytes"] == big.size
    assert all(f["source"] == "hf-cache" for p, f in files.items() if p != "model.pth")
    assert (env.out_dir / "model.pth").read_bytes() == big.data_path.read_bytes()
    ignored = [w for w in r.json()["warnings"] if "ignored" in w]
    assert len(ignored) == 1 and ignored[0].startswith("model.pth:") and str(blob) in ignored[0], ignored
    assert "sha256" in ignored[0]
    assert (blob.read_bytes(), blob.stat().st_mtime_ns, blob.stat().st_mode) == before
    assert [p for p in file_gets(env.hub) if "model.pth" in p or big.sha256 in p]


def test_reuse_from_another_complete_folder_downloads_nothing(env: Env, tmp_path: Path) -> None:
    assert env.run(env={"HF_TOKEN": TOKEN}).code == 0
    other = tmp_path / "other"
    env.hub.clear_requests()
    r = env.run("--json", "--local-dir", str(other), "--reuse-from", str(env.out_dir), env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    assert file_gets(env.hub) == []
    files = by_path(r.json())
    assert all(f["source"] == "reuse-from" and f["fetched_bytes"] == 0 for f in files.values()), files
    assert_same_files(other, env.hub)
    assert not (other / "model.pth").samefile(env.out_dir / "model.pth")
    assert "reused from a --reuse-from folder, 0 B downloaded" in r.err


def test_link_makes_hard_links_to_the_cache_and_leaves_the_blob_untouched(env: Env) -> None:
    hf_download(env)
    blob = repo_cache(env) / "blobs" / env.hub.repo(MODEL).files()["model.pth"].sha256
    mode = blob.stat().st_mode
    r = env.run("--json", "--link", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    assert (env.out_dir / "model.pth").samefile(blob)
    assert blob.stat().st_mode == mode and blob.stat().st_nlink == 2
    assert "model.pth: linked from" in r.err
    assert_same_files(env.out_dir, env.hub)
    # a re-run trusts the linked files as it trusts downloaded ones
    env.hub.clear_requests()
    again = env.run(env={"HF_TOKEN": TOKEN})
    assert again.code == 0 and "up to date" in again.err and file_gets(env.hub) == []


def test_a_file_of_another_revision_in_reuse_from_is_not_used(env: Env, tmp_path: Path) -> None:
    old = tmp_path / "old"
    assert env.run("--revision", "v1.0", "--local-dir", str(old), env={"HF_TOKEN": TOKEN}).code == 0
    r = env.run("--json", "--reuse-from", str(old), env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    files = by_path(r.json())
    assert files["config.json"]["source"] == "download" and files["model.pth"]["source"] == "reuse-from"
    assert (env.out_dir / "config.json").read_bytes() == hub_content(env.hub)["config.json"]
    assert (old / "config.json").read_bytes() == hub_content(env.hub, "v1.0")["config.json"]
    assert any(w.startswith("config.json: ignored") for w in r.json()["warnings"])


def test_reuse_from_a_missing_folder_is_a_usage_error(env: Env, tmp_path: Path) -> None:
    r = env.run("--reuse-from", str(tmp_path / "nowhere"), env={"HF_TOKEN": TOKEN})
    assert r.code == 2 and "--reuse-from" in r.err and "fix:" in r.err


def test_a_manifest_without_sources_is_still_trusted(env: Env) -> None:
    assert env.run(env={"HF_TOKEN": TOKEN}).code == 0
    path = env.out_dir / ".gatedfetch" / "manifest.json"
    doc = json.loads(path.read_text())
    for f in doc["files"]:
        del f["source"]
    path.write_text(json.dumps(doc))
    env.hub.clear_requests()
    r = env.run("--json", env={"HF_TOKEN": TOKEN})
    assert r.code == 0 and "up to date" in r.err and file_gets(env.hub) == []
    assert {f["source"] for f in r.json()["files"]} == {"download"}


OFFLINE_READ = """
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download
folder = snapshot_download(sys.argv[1], local_files_only=True)
one = hf_hub_download(sys.argv[1], "model.pth", local_files_only=True)
print(json.dumps({"folder": folder, "model": one}))
"""


def test_also_cache_lets_huggingface_hub_find_the_model_offline(env: Env) -> None:
    r = env.run("--json", "--also-cache", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    commit = env.hub.repo(MODEL).commit("main")
    assert (repo_cache(env) / "refs" / "main").read_text() == commit
    pointer = repo_cache(env) / "snapshots" / commit / "model.pth"
    assert os.readlink(pointer) == "../../blobs/" + env.hub.repo(MODEL).files()["model.pth"].sha256
    environ = hf_environ(env, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-c", OFFLINE_READ, MODEL], env=environ, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    found = json.loads(proc.stdout)
    assert_same_files(Path(found["folder"]), env.hub)
    assert Path(found["model"]).read_bytes() == hub_content(env.hub)["model.pth"]
    # `hf download` has no --local-files-only flag in huggingface_hub 2.4; HF_HUB_OFFLINE=1 is how it runs offline
    cli = subprocess.run([str(HF), "download", MODEL], env=environ, capture_output=True, timeout=60)
    assert cli.returncode == 0, cli.stderr.decode(errors="replace")
    assert f"path: {found['folder']}" in cli.stdout.decode()


def test_a_model_filed_by_also_cache_serves_a_second_folder(env: Env, tmp_path: Path) -> None:
    assert env.run("--also-cache", env={"HF_TOKEN": TOKEN}).code == 0
    env.hub.clear_requests()
    r = env.run("--json", "--local-dir", str(tmp_path / "second"), env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    assert file_gets(env.hub) == []
    assert {f["source"] for f in r.json()["files"]} == {"hf-cache"}
    assert_same_files(tmp_path / "second", env.hub)


# --- a copy killed halfway ----------------------------------------------------------------------

BIG = 256 * 1024 * 1024 + 17  # big enough that the copy is caught in the act


@pytest.fixture(scope="module")
def big_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bigreuse")


@pytest.fixture
def big_env(tmp_path: Path, big_data: Path) -> Iterator[Env]:
    with TestHub(default_world(data_dir=big_data, big_size=BIG)) as hub:
        home = tmp_path / "home"
        home.mkdir()
        yield Env(project=copy_project(tmp_path / "project"), home=home, hub=hub, out_dir=tmp_path / "out")


def test_a_copy_killed_halfway_leaves_nothing_in_place_and_the_rerun_completes(big_env: Env, tmp_path: Path) -> None:
    env = big_env
    source = tmp_path / "source"
    for path, spec in env.hub.repo(MODEL).files().items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spec.data_path, source / path)
    big = env.hub.repo(MODEL).files()["model.pth"]
    copy = partial_path(env.out_dir / ".gatedfetch", big.sha256).with_suffix(".copy")
    dest = env.out_dir / "model.pth"
    proc = env.start("--reuse-from", str(source), env={"HF_TOKEN": TOKEN})
    try:
        deadline = time.monotonic() + 120  # a bound on the wait, not a measurement
        # the first byte of model.pth on disk, wherever it lands
        while not (copy.exists() or dest.exists()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        os.killpg(proc.pid, signal.SIGSTOP)  # frozen mid-copy: look at what is on disk now
        assert not dest.exists()
        assert copy.exists(), "the run ended (or never started the copy) before it could be stopped"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not dest.exists()
    assert not (env.out_dir / ".gatedfetch" / "manifest.json").exists()
    env.hub.clear_requests()
    r = env.run("--json", "--reuse-from", str(source), env={"HF_TOKEN": TOKEN}, timeout=300)
    assert r.code == 0, r.err
    assert by_path(r.json())["model.pth"]["source"] == "reuse-from"
    assert file_gets(env.hub) == []
    assert dest.read_bytes() == big.data_path.read_bytes()
    assert not copy.exists()
