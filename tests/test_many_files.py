"""Many small files: each comes whole in one request with no partial, lock or marker; all are made durable at
once before the manifest lists them; a kill between the steps never leaves a wrong file in place or a claim the
bytes do not back; a re-run of a complete copy reads no file and makes one request."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatedfetch import failures, manifest, reuse, store
from gatedfetch.digest import Digest
from gatedfetch.localhub import MODEL, TOKENS, default_world
from gatedfetch.progress import make_progress
from gatedfetch.store import durable
from gatedfetch.store import small as small_store
from gatedfetch.transfer import FileResult, RemoteFile, fetch_all
from tests.conftest import Env, Main, copy_project
from tests.jobs_hub import TestHub

TOKEN = TOKENS["accepted_read"]
HEADERS = {"authorization": f"Bearer {TOKEN}"}
SHARDS = 40


@pytest.fixture(scope="module")
def many_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("manyhub")


@pytest.fixture
def many_hub(many_data: Path) -> Iterator[TestHub]:
    with TestHub(default_world(data_dir=many_data, big_size=3 * 1024 * 1024, small_files=SHARDS)) as h:
        yield h


@pytest.fixture
def many(many_hub: TestHub, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         tmp_path: Path) -> Main:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    m = Main(many_hub, capfd, monkeypatch, home)
    from huggingface_hub import constants  # the resolve URLs follow the endpoint only through this template

    template = many_hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return m


def shards(hub: TestHub) -> dict[str, bytes]:
    return {p: f.data_path.read_bytes() for p, f in hub.repo(MODEL).files().items() if p.startswith("shards/")}


def remote(hub: TestHub, path: str) -> RemoteFile:
    spec = hub.repo(MODEL).files()[path]
    url = f"{hub.url}/{MODEL}/resolve/{hub.repo(MODEL).commit()}/{path}"
    return RemoteFile(path, spec.size, url, None, spec.blob_sha1)


def fetch(hub: TestHub, out: Path, paths: list[str]) -> list[FileResult]:
    files = [remote(hub, p) for p in paths]
    return list(fetch_all(files, out, out / ".gatedfetch", HEADERS, progress=make_progress("quiet"),
                          endpoint=hub.url))


def test_each_small_file_is_one_request_with_no_partial_lock_or_marker(many_hub: TestHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    want = shards(many_hub)
    results = fetch(many_hub, out, sorted(want))
    assert all(r.verified for r in results)
    for path, data in want.items():
        assert (out / path).read_bytes() == data
    gets = [q for q in many_hub.requests if q.method == "GET" and "/resolve/" in q.path]
    assert len(gets) == len(want)
    work = out / ".gatedfetch"
    assert [list((work / d).iterdir()) for d in ("partial", "locks", "done")] == [[], [], []]


def test_a_small_file_with_wrong_bytes_never_lands(many_hub: TestHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    many_hub.add_fault("shards/00003.json", flip_at=5, times=None)
    with pytest.raises(failures.IntegrityFailure, match="shards/00003.json"):
        fetch(many_hub, out, ["shards/00003.json"])
    assert not (out / "shards" / "00003.json").exists()
    assert list((out / ".gatedfetch" / "partial").iterdir()) == []


def test_a_small_file_longer_than_listed_never_lands(many_hub: TestHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    many_hub.settings.no_content_length = True
    rf = remote(many_hub, "shards/00004.json")
    short = RemoteFile(rf.path, rf.size - 1, rf.url, None, None)
    with pytest.raises(failures.IntegrityFailure):
        fetch_all([short], out, out / ".gatedfetch", HEADERS, progress=make_progress("quiet"), endpoint=many_hub.url)
    assert not (out / "shards" / "00004.json").exists()


def test_a_reset_mid_small_file_is_retried(many_hub: TestHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    many_hub.add_fault("shards/00005.json", reset_after=10, times=2)
    fetch(many_hub, out, ["shards/00005.json"])
    assert (out / "shards" / "00005.json").read_bytes() == shards(many_hub)["shards/00005.json"]


def test_the_manifest_is_written_only_after_the_files_it_lists_are_durable(
    many: Main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    settled: list[Path] = []
    settle, save = store.settle, manifest.save

    def settle_seen(paths: list[Path]) -> None:
        events.append("settle")
        settled.extend(paths)
        settle(paths)

    def save_seen(local_dir: Path, m: manifest.Manifest) -> None:
        events.append("save")
        save(local_dir, m)

    monkeypatch.setattr(store, "settle", settle_seen)
    monkeypatch.setattr(manifest, "save", save_seen)
    out = tmp_path / "out"
    r = many("--local-dir", str(out))
    assert r.code == 0, r.err
    assert events == ["settle", "save"]
    listed = {e.path for e in manifest.load(out).files}  # type: ignore[union-attr]
    assert set(shards(many.hub)) <= {p.relative_to(out).as_posix() for p in settled} <= listed


def test_settle_without_syncfs_fsyncs_each_file_and_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [tmp_path / "a" / "1", tmp_path / "a" / "2", tmp_path / "b" / "3"]
    for f in files:
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x")
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(durable, "_syncfs", lambda folder: False)
    monkeypatch.setattr(os, "fsync", fsync)
    durable.settle(files)
    assert sorted(synced) == sorted([str(f) for f in files] + [str(tmp_path / "a"), str(tmp_path / "b")])


def test_a_kill_between_write_and_rename_leaves_no_file_in_place_and_the_next_run_sweeps_it(
    many_hub: TestHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"

    class Killed(BaseException):
        pass

    def killed(src: object, dst: object) -> None:
        raise Killed()

    monkeypatch.setattr(small_store.os, "replace", killed)
    with pytest.raises(Killed):
        fetch(many_hub, out, ["shards/00001.json"])
    monkeypatch.undo()
    assert not (out / "shards" / "00001.json").exists()
    (left,) = (out / ".gatedfetch" / "partial").glob("*.small")
    dead = _dead_pid()
    gone = left.with_name(left.name.replace(f".{os.getpid()}-", f".{dead}-"))
    left.rename(gone)
    live = gone.with_name(gone.name.replace(f".{dead}-", f".{os.getpid()}-"))
    live.write_bytes(b"a live run's")
    assert small_store.sweep(out / ".gatedfetch") == [gone]
    assert live.exists() and not gone.exists()


def _dead_pid() -> int:
    """The process id of a process that has ended."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_kill_after_the_renames_before_the_manifest_makes_the_next_run_verify_not_trust(
    many: Main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"

    class Killed(BaseException):
        pass

    def killed(d: Path, m: manifest.Manifest) -> None:
        raise Killed()

    with monkeypatch.context() as mp:
        mp.setattr(manifest, "save", killed)
        with pytest.raises(Killed):
            many("--local-dir", str(out))
    assert manifest.load(out) is None  # nothing claims the files: they are all in place, unclaimed
    # A power cut may take back the bytes of a file whose rename survived: same size, wrong bytes.
    victim = out / "shards" / "00002.json"
    victim.write_bytes(b"\0" * victim.stat().st_size)
    r = many("--local-dir", str(out), "--json")
    assert r.code == 0, r.err
    docs = {f["path"]: f for f in r.json()["files"]}
    assert docs["shards/00002.json"]["source"] == "download" and docs["shards/00001.json"]["source"] == "in-place"
    for path, data in shards(many.hub).items():
        assert (out / path).read_bytes() == data
    assert {e.path for e in manifest.load(out).files} >= set(shards(many.hub))  # type: ignore[union-attr]


def test_a_rerun_of_a_complete_copy_reads_no_file_and_makes_one_request(
    many: Main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    first = many("--local-dir", str(out))
    assert first.code == 0, first.err
    many.hub.clear_requests()

    def no(*args: object, **kw: object) -> None:
        raise AssertionError("the up-to-date path read or hashed a file")

    monkeypatch.setattr(manifest, "sha256_of", no)
    monkeypatch.setattr(reuse, "bring_all", no)
    monkeypatch.setattr(Digest, "update", no)
    monkeypatch.setattr(hashlib, "sha256", no)
    r = many("--local-dir", str(out))
    assert r.code == 0 and "up to date" in r.err, r.err
    (call,) = [q.path for q in many.hub.requests if "agent-harnesses" not in q.path]
    assert call.startswith(f"/api/models/{MODEL}/revision/main")


@pytest.mark.e2e
def test_setup_sh_brings_a_few_hundred_small_files_verified_and_listed(tmp_path: Path, many_data: Path) -> None:
    with TestHub(default_world(data_dir=tmp_path / "hub", small_files=300)) as hub:
        project = copy_project(tmp_path / "project")
        home = tmp_path / "home"
        home.mkdir()
        env = Env(project=project, home=home, hub=hub, out_dir=tmp_path / "out")
        r = env.run("--json", "--quiet", env={"HF_TOKEN": TOKEN})
        assert r.code == 0, r.err
        files = r.json()["files"]
        want = {p: f.data_path.read_bytes() for p, f in hub.repo(MODEL).files().items()}
        assert len(files) == len(want) and all(f["verified"] for f in files)
        for path, data in want.items():
            assert (env.out_dir / path).read_bytes() == data
        listed = json.loads((env.out_dir / ".gatedfetch" / "manifest.json").read_text())["files"]
        assert {e["path"] for e in listed} == set(want)
