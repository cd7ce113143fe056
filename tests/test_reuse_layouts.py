"""Reuse against the layouts users really have, built by hand as huggingface_hub 2.4 writes them: per-repo
blobs that are relative or absolute symlinks into the shared store `<cache>/blobs/<2 hex>/<hash>`, snapshot
folders of symlinks, a target already filled in place, damaged cache blobs, a held huggingface_hub lock, a
read-only cache, a refused hard link, a copy killed with its source gone. Most call the modules in-process
with plain values; the last four run `bash setup.sh`, one per story of the issue's "done when"."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from filelock import FileLock
from huggingface_hub import constants, hf_hub_download, scan_cache_dir

from gatedfetch import hf_cache, manifest, reuse, store
from gatedfetch.hub_client import RepoFile, Snapshot
from gatedfetch.local_bytes import HF_CACHE, IN_PLACE, REUSE_FROM, Reused
from gatedfetch.progress import make_progress
from gatedfetch.store import partial_path
from gatedfetch.transfer import RemoteFile, content_key, fetch_all
from tests.conftest import MODEL, Env, hub_content
from tests.test_reuse import HF, TOKEN, by_path, file_gets, hf_download, hf_environ, hf_home, repo_cache

COMMIT = "c0ffee" + "0" * 34
DATA = {
    "model.pth": bytes(range(256)) * 1200 + b"model",
    "codec.pth": bytes(reversed(range(256))) * 400 + b"codec",
    "config.json": b'{"dim": 1024}\n',
}
LFS = {"model.pth", "codec.pth"}


def repo_file(path: str) -> RepoFile:
    data = DATA[path]
    if path in LFS:
        return RepoFile(path, len(data), hashlib.sha256(data).hexdigest(), None)
    sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return RepoFile(path, len(data), None, sha1)


def snap() -> Snapshot:
    return Snapshot(MODEL, "main", COMMIT, True, [repo_file(p) for p in sorted(DATA)])


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """huggingface_hub's cache for this test (HF_HUB_CACHE as the library resolved it)."""
    folder = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    return folder


def storage(cache: Path) -> Path:
    return cache / "models--fishaudio--openaudio-s1-mini"


def put_blob(cache: Path, path: str, data: bytes | None = None, link: str | None = None) -> Path:
    """`blobs/<etag>`: a regular file (link=None), or a "relative"/"absolute" symlink into the shared store,
    as huggingface_hub 2.x publishes a Xet file (the store entry is read-only, named by another hash)."""
    f = repo_file(path)
    blob = storage(cache) / "blobs" / hf_cache.etag(f)  # type: ignore[operator]
    blob.parent.mkdir(parents=True, exist_ok=True)
    content = DATA[path] if data is None else data
    if link is None:
        blob.write_bytes(content)
        return blob
    store_dir = cache / "blobs"
    store_dir.mkdir(exist_ok=True)
    (store_dir / ".huggingface-shared-blobs").write_text("1\n")
    xet = hashlib.sha256(b"xet" + content).hexdigest()
    entry = store_dir / xet[:2] / xet
    entry.parent.mkdir(exist_ok=True)
    entry.write_bytes(content)
    entry.chmod(0o444)
    rel = f"models--fishaudio--openaudio-s1-mini/blobs/{blob.name}\n"
    (entry.parent / f"{xet}.refs").write_text(rel)
    os.symlink(entry if link == "absolute" else os.path.relpath(entry, blob.parent), blob)
    return blob


def put_snapshot(cache: Path) -> Path:
    """snapshots/<commit>/<path> → ../../blobs/<etag>, refs/main, as the library leaves them."""
    folder = storage(cache) / "snapshots" / COMMIT
    folder.mkdir(parents=True, exist_ok=True)
    for path in DATA:
        os.symlink(f"../../blobs/{hf_cache.etag(repo_file(path))}", folder / path)
    (storage(cache) / "refs").mkdir(exist_ok=True)
    (storage(cache) / "refs" / "main").write_text(COMMIT)
    return folder


def fill(folder: Path, **changed: bytes) -> Path:
    for path, data in DATA.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(changed.get(path, data))
    return folder


def bring(
    target: Path, *, link: bool = False, reuse_from: tuple[Path, ...] = ()
) -> tuple[list[Reused], list[str]]:
    s = snap()
    return reuse.bring_all(s.files, s, target, manifest.work_dir(target), list(reuse_from), link)


def flipped(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 1
    return bytes(out)


# --- links to bytes, never to links --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_link_to_a_shared_store_blob_links_the_real_file_and_survives_the_cache(
    cache: Path, tmp_path: Path, kind: str
) -> None:
    blobs = {p: put_blob(cache, p, link=kind) for p in LFS}
    assert all(b.is_symlink() for b in blobs.values())  # the fault: the candidate is a symlink
    target = tmp_path / "target"
    got, notes = bring(target, link=True)
    assert notes == []
    assert {u.path for u in got if u.linked and u.source == HF_CACHE} == LFS
    for path, blob in blobs.items():
        dest = target / path
        assert not dest.is_symlink() and dest.samefile(blob.resolve())
        assert next(u for u in got if u.path == path).copied_bytes == 0
    shutil.rmtree(cache)
    for path in LFS:
        assert (target / path).read_bytes() == DATA[path]


def test_link_from_a_snapshot_folder_of_symlinks_with_reuse_from(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_blob(cache, "model.pth", link="relative")
    put_blob(cache, "codec.pth")
    put_blob(cache, "config.json")
    snapshot = put_snapshot(cache)
    # the run reads another cache: only --reuse-from leads to these files
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    target = tmp_path / "target"
    got, notes = bring(target, link=True, reuse_from=(snapshot,))
    assert notes == []
    assert {u.path: (u.source, u.linked) for u in got} == {p: (REUSE_FROM, True) for p in DATA}
    assert all(not (target / p).is_symlink() and (target / p).read_bytes() == d for p, d in DATA.items())


def test_a_refused_hard_link_copies_and_says_so(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for p in DATA:
        put_blob(cache, p)
    calls: list[str] = []

    def refuse(src: object, dst: object, **kw: object) -> None:  # fs.protected_hardlinks on another user's blob
        calls.append(str(src))
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    target = tmp_path / "target"
    got, notes = bring(target, link=True)
    assert len(calls) == len(DATA)  # the fault struck every file
    assert notes == []
    for u in got:
        assert not u.linked and "Operation not permitted" in u.no_link and u.copied_bytes == u.size
        assert (target / u.path).stat().st_nlink == 1 and (target / u.path).read_bytes() == DATA[u.path]


def test_a_link_that_lands_as_a_symlink_is_replaced_by_a_copy(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_blob(cache, "model.pth")
    real_link = os.link

    def symlinking(src: str, dst: str, **kw: object) -> None:  # a link() that links a symlink, as Linux does
        os.symlink(src, dst)

    monkeypatch.setattr(os, "link", symlinking)
    got, _ = bring(tmp_path / "target", link=True)
    monkeypatch.setattr(os, "link", real_link)
    model = next(u for u in got if u.path == "model.pth")
    assert not model.linked and model.no_link
    assert not (tmp_path / "target" / "model.pth").is_symlink()


# --- files in place first -------------------------------------------------------------------------


def test_files_already_in_place_are_verified_and_kept_without_a_manifest(cache: Path, tmp_path: Path) -> None:
    target = fill(tmp_path / "target")
    before = {p: (target / p).stat() for p in DATA}
    got, notes = bring(target)
    assert notes == [] and not manifest.path_of(target).exists()
    assert {u.path: u.source for u in got} == {p: IN_PLACE for p in DATA}
    for p, st in before.items():  # kept: the same inode, not rewritten
        after = (target / p).stat()
        assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_a_wrong_file_in_place_is_named_and_replaced_from_the_cache(cache: Path, tmp_path: Path) -> None:
    put_blob(cache, "model.pth")
    target = fill(tmp_path / "target", **{"model.pth": flipped(DATA["model.pth"])})
    got, notes = bring(target)
    assert len(notes) == 1 and notes[0].startswith("model.pth: the file in place") and "sha256" in notes[0]
    assert next(u for u in got if u.path == "model.pth").source == HF_CACHE
    assert (target / "model.pth").read_bytes() == DATA["model.pth"]


def test_a_symlink_in_place_is_not_kept_but_replaced_by_the_file(cache: Path, tmp_path: Path) -> None:
    blob = put_blob(cache, "model.pth")
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(blob, target / "model.pth")  # an older `--local-dir-use-symlinks` folder
    got, _ = bring(target)
    assert next(u for u in got if u.path == "model.pth").source == HF_CACHE
    assert not (target / "model.pth").is_symlink()


# --- no orphans ------------------------------------------------------------------------------------


def test_a_killed_copy_whose_source_is_gone_is_removed_but_a_live_one_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "target"
    work = manifest.work_dir(target)
    model, codec = repo_file("model.pth"), repo_file("codec.pth")
    orphan = partial_path(work, model.sha256 or "").with_suffix(".copy")
    live = partial_path(work, codec.sha256 or "").with_suffix(".copy")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x" * 1000)
    live.write_bytes(b"y" * 1000)
    lock_file = work / "locks" / f"{codec.sha256}.lock"
    lock_file.parent.mkdir(parents=True)
    with FileLock(str(lock_file)):  # another run is copying codec.pth right now
        removed = reuse.sweep_copies(work)
    assert removed == [orphan] and not orphan.exists() and live.exists()


def test_a_file_another_run_brought_in_meanwhile_keeps_that_runs_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store.small, "SMALL_FILE", -1)  # markers are a big file's: this one (300 kB) is made one
    out = fill(tmp_path / "out")
    work = manifest.work_dir(out)
    f = repo_file("model.pth")
    rf = RemoteFile(f.path, f.size, "http://127.0.0.1:9/never", f.sha256, None)
    marker = store.marker_path(work, content_key(rf), f.path)
    marker.parent.mkdir(parents=True)
    store.write_marker(marker, f.path, out / f.path, f.sha256 or "", True, HF_CACHE)
    (r,) = fetch_all([rf], out, work, {}, progress=make_progress("quiet"), endpoint="http://127.0.0.1:9")
    assert (r.source, r.fetched_bytes, r.verified) == (HF_CACHE, 0, True)


# --- --also-cache ----------------------------------------------------------------------------------


def offline_read(cache: Path, path: str) -> bytes:
    return Path(hf_hub_download(MODEL, path, cache_dir=cache, local_files_only=True)).read_bytes()


def test_also_cache_replaces_damaged_blobs_and_huggingface_hub_reads_the_right_bytes(
    cache: Path, tmp_path: Path
) -> None:
    bad_model = put_blob(cache, "model.pth", flipped(DATA["model.pth"]))
    bad_codec = put_blob(cache, "codec.pth", DATA["codec.pth"][:-10], link="relative")
    put_blob(cache, "config.json")
    put_snapshot(cache)
    assert offline_read(cache, "model.pth") != DATA["model.pth"]  # the fault is there to begin with
    target = fill(tmp_path / "target")
    said: list[str] = []
    done = hf_cache.also_cache(snap(), target, False, said.append)
    replaced = [n for n in done.notes if "replaced the blob" in n]
    assert len(replaced) == 2 and str(bad_model) in replaced[0] + replaced[1] and str(bad_codec) in "".join(replaced)
    assert done.snapshot == storage(cache) / "snapshots" / COMMIT and done.filed == 3
    assert done.written == len(DATA["model.pth"]) + len(DATA["codec.pth"])
    for path, data in DATA.items():
        assert offline_read(cache, path) == data
    scanned = scan_cache_dir(cache)  # what `hf cache ls` and `hf cache rm` read
    assert scanned.warnings == [] and [r.repo_id for r in scanned.repos] == [MODEL]
    assert not bad_codec.is_symlink()  # the damaged store entry is no longer what the repo's blob points to


def test_also_cache_over_a_cache_that_is_right_takes_no_lock_and_writes_nothing(cache: Path, tmp_path: Path) -> None:
    target = fill(tmp_path / "target")
    first = hf_cache.also_cache(snap(), target, False, lambda _: None)
    assert first.changed and first.snapshot is not None
    ref = storage(cache) / "refs" / "main"
    before = ref.stat().st_mtime_ns
    locks = [FileLock(str(cache / ".locks" / storage(cache).name / f"{hf_cache.etag(f)}.lock")) for f in snap().files]
    for lock in locks:  # held: any attempt to take one would end in a warning
        lock.acquire()
    try:
        again = hf_cache.also_cache(snap(), target, False, lambda _: None, wait=0)
    finally:
        for lock in locks:
            lock.release()
    assert again.notes == [] and not again.changed and again.written == 0 and again.snapshot == first.snapshot
    assert ref.stat().st_mtime_ns == before


def test_a_held_huggingface_hub_lock_is_waited_for_within_the_bound_and_named(cache: Path, tmp_path: Path) -> None:
    target = fill(tmp_path / "target")
    model = repo_file("model.pth")
    lock_file = cache / ".locks" / storage(cache).name / f"{model.sha256}.lock"
    lock_file.parent.mkdir(parents=True)
    said: list[str] = []
    with FileLock(str(lock_file), mode=0o664) as held:  # a running `hf download` of model.pth
        started = time.monotonic()
        done = hf_cache.also_cache(snap(), target, False, said.append, wait=0.3)
        waited = time.monotonic() - started
        assert held.is_locked
    assert 0.3 <= waited < 1.5
    assert any("waiting for huggingface_hub's lock" in s and str(lock_file) in s for s in said), said
    assert len(done.notes) == 1 and done.notes[0].startswith("model.pth: not put in the Hugging Face cache")
    assert done.snapshot is None and done.filed == 2
    assert not (storage(cache) / "refs" / "main").exists()


def test_a_read_only_cache_gives_one_warning_and_names_no_snapshot(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = fill(tmp_path / "target")
    cache.mkdir()
    refused: list[str] = []
    real_mkdir = os.mkdir

    def read_only_mkdir(path: object, *a: object, **kw: object) -> None:  # a read-only mount (root ignores modes)
        if str(path).startswith(str(cache)):
            refused.append(str(path))
            raise PermissionError(errno.EROFS, "Read-only file system", str(path))
        real_mkdir(path, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    done = hf_cache.also_cache(snap(), target, False, lambda _: None)
    assert refused  # the fault struck
    assert len(done.notes) == 1 and "cannot be written" in done.notes[0] and "Read-only file system" in done.notes[0]
    assert done.snapshot is None and not done.changed


# --- end to end: one `bash setup.sh` run per story -------------------------------------------------


def test_offline_with_also_cache_says_that_nothing_is_filed(env: Env) -> None:
    r = env.run("--json", "--also-cache", env={"HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"})
    assert any(w.startswith("--also-cache: HF_HUB_OFFLINE=1") for w in r.json()["warnings"]), r.err
    assert "hf_cache_snapshot" not in r.json()


def big_gets(env: Env) -> list[str]:
    big = {f.sha256 for p, f in env.hub.repo(MODEL).files().items() if f.lfs}
    return [p for p in file_gets(env.hub) if any(s in p for s in big) or p.endswith(".pth")]


def test_a_folder_filled_by_hf_download_local_dir_is_verified_in_place_and_not_fetched(env: Env) -> None:
    proc = subprocess.run(
        [str(HF), "download", MODEL, "--local-dir", str(env.out_dir)],
        env=hf_environ(env, HF_TOKEN=TOKEN), stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    meta = env.out_dir / ".cache" / "huggingface"
    assert meta.is_dir()  # huggingface_hub's own records of the folder
    env.hub.clear_requests()
    r = env.run("--json", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    assert big_gets(env) == [] and file_gets(env.hub) == []
    files = by_path(r.json())
    assert set(files) == set(hub_content(env.hub))
    assert all(f["source"] == "in-place" and f["verified"] for f in files.values()), files
    saved = json.loads(manifest.path_of(env.out_dir).read_text())
    assert {f["path"] for f in saved["files"]} == set(files)
    assert meta.is_dir()


def test_link_against_a_shared_blob_cache_lands_files_that_outlive_the_cache(env: Env) -> None:
    hf_download(env)
    files = env.hub.repo(MODEL).files()
    hub = hf_home(env) / "hub"
    store = hub / "blobs"
    store.mkdir()
    (store / ".huggingface-shared-blobs").write_text("1\n")
    for path, kind in (("model.pth", "absolute"), ("codec.pth", "relative")):  # as huggingface_hub 2.x publishes
        blob = repo_cache(env) / "blobs" / files[path].sha256
        xet = hashlib.sha256(b"xet" + files[path].sha256.encode()).hexdigest()
        entry = store / xet[:2] / xet
        entry.parent.mkdir()
        os.replace(blob, entry)
        os.symlink(entry if kind == "absolute" else os.path.relpath(entry, blob.parent), blob)
        assert blob.is_symlink()
    env.hub.clear_requests()
    r = env.run("--json", "--link", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    assert big_gets(env) == []
    assert "model.pth: linked from" in r.err and "codec.pth: linked from" in r.err
    assert not any(p.is_symlink() for p in env.out_dir.rglob("*"))
    shutil.rmtree(hf_home(env) / "hub")
    for path, data in hub_content(env.hub).items():
        assert (env.out_dir / path).read_bytes() == data


def test_also_cache_over_damaged_blobs_leaves_huggingface_hub_reading_the_right_bytes(env: Env) -> None:
    hf_download(env)
    files = env.hub.repo(MODEL).files()
    model_blob = repo_cache(env) / "blobs" / files["model.pth"].sha256
    model_blob.write_bytes(flipped(model_blob.read_bytes()))
    codec_blob = repo_cache(env) / "blobs" / files["codec.pth"].sha256
    codec_blob.write_bytes(codec_blob.read_bytes()[:-100])
    r = env.run("--json", "--also-cache", env={"HF_TOKEN": TOKEN})
    assert r.code == 0, r.err
    assert sum("replaced the blob" in w for w in r.json()["warnings"]) == 2
    for path, data in hub_content(env.hub).items():
        got = hf_hub_download(MODEL, path, cache_dir=hf_home(env) / "hub", local_files_only=True)
        assert Path(got).read_bytes() == data, path


def test_a_held_huggingface_hub_lock_ends_the_run_in_time_with_a_warning(env: Env) -> None:
    sha = env.hub.repo(MODEL).files()["model.pth"].sha256
    lock_file = hf_home(env) / "hub" / ".locks" / "models--fishaudio--openaudio-s1-mini" / f"{sha}.lock"
    lock_file.parent.mkdir(parents=True)
    with FileLock(str(lock_file), mode=0o664) as held:
        r = env.run("--json", "--also-cache", env={"HF_TOKEN": TOKEN, "GATEDFETCH_LOCK_WAIT": "0.5"}, timeout=120)
        assert held.is_locked
    assert r.code == 0, r.err
    assert f"waiting for huggingface_hub's lock {lock_file}" in r.err
    assert any(w.startswith("model.pth: not put in the Hugging Face cache") for w in r.json()["warnings"])
    assert "hf_cache_snapshot" not in r.json()
