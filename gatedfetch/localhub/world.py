"""The world the local hub serves: users and their tokens, repos, commits and files, who may read what.

`default_world()` writes the seeded file contents once (a restart on the same data dir reads nothing) and
returns the gated model (manual approval, commits `main` and tag `v1.0`) and one ungated repo. The tokens
are fake canaries (`hf_Canary…`), one per access state; `DEMO_SCENARIOS` names the one each `--demo`
scenario pipes in. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "fishaudio/openaudio-s1-mini"
TINY = "public/tiny-model"
_LFS_SPEC = "https://git-lfs.github.com/spec/v1"
_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def _token(name: str) -> str:
    """A fake canary token: `hf_Canary` + 28 letters/digits derived from a hash (37 characters, like a real one)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest(), "big")
    body = ""
    while len(body) < 28:
        digest, i = divmod(digest, len(alphabet))
        body += alphabet[i]
    return "hf_Canary" + body


TOKENS: dict[str, str] = {
    "accepted_read": _token("AcceptedRead"),
    "accepted_write": _token("AcceptedWrite"),
    "fine_grained_ok": _token("FineGrainedOk"),
    "fine_grained_no_gated": _token("FineGrainedNoGated"),
    "pending": _token("Pending"),
    "not_accepted": _token("NotAccepted"),
    "rejected": _token("Rejected"),
    "invalid": _token("Invalid"),  # known to nobody: every route answers 401
}


# `--demo` scenario → the token that plays it (`bash setup.sh --help` lists the scenario names)
DEMO_SCENARIOS: dict[str, str] = {
    "granted": "accepted_read",
    "pending": "pending",
    "not-accepted": "not_accepted",
    "rejected": "rejected",
    "invalid-token": "invalid",
    "fine-grained": "fine_grained_no_gated",
}


@dataclass(frozen=True)
class User:
    name: str
    token: str
    role: str  # read | write | fineGrained
    can_read_gated: bool = True  # fine-grained tokens only: "Read access to contents of all public gated repos"
    orgs: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileSpec:
    """One file of a commit. `blob_sha1` is the git blob sha1 of the content (the ETag of a regular file);
    for an LFS file the tree lists the pointer's blob sha1 instead (see `pointer`)."""

    path: str
    size: int
    sha256: str
    blob_sha1: str
    lfs: bool
    data_path: Path

    @property
    def pointer(self) -> bytes:
        return f"version {_LFS_SPEC}\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    @property
    def tree_oid(self) -> str:
        """The `oid` the Hub lists: the git blob sha1 of what git stores (the pointer, for an LFS file)."""
        if not self.lfs:
            return self.blob_sha1
        pointer = self.pointer
        return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()


@dataclass
class Repo:
    repo_id: str
    gated: bool | str  # False | "auto" | "manual"
    commits: dict[str, dict[str, FileSpec]]  # commit sha -> files
    refs: dict[str, str]  # branch/tag -> commit sha

    def resolve(self, revision: str) -> str | None:
        """The commit a revision names (a branch, a tag, or one of this repo's full commit shas), or None."""
        if revision in self.commits:
            return revision
        return self.refs.get(revision)

    def commit(self, revision: str = "main") -> str:
        sha = self.resolve(revision)
        if sha is None:
            raise KeyError(f"{self.repo_id} has no revision {revision!r}")
        return sha

    def files(self, revision: str = "main") -> dict[str, FileSpec]:
        return self.commits[self.commit(revision)]


@dataclass
class World:
    repos: dict[str, Repo]
    users: dict[str, User]  # token -> user
    access: dict[tuple[str, str], str]  # (user name, repo id) -> accepted | pending | none | rejected



# -- file data ------------------------------------------------------------------------------

_META_VERSION = 2


def _write_file(data_dir: Path, name: str, content: bytes | None, size: int, seed: int, lfs: bool) -> FileSpec:
    """Write a file once (fixed content, or `size` seeded pseudo-random bytes written in 1 MiB chunks), hashing
    while writing. A side file keeps the hashes so that a restart on the same data dir reads nothing."""
    path = data_dir / f"{seed}-{name}"
    meta_path = data_dir / f".{seed}-{name}.meta.json"
    if content is not None:
        size = len(content)
    want = {"version": _META_VERSION, "seed": seed, "size": size}
    try:
        meta = json.loads(meta_path.read_text())
        st = path.stat()
        if all(meta.get(k) == v for k, v in want.items()) and meta["mtime_ns"] == st.st_mtime_ns \
                and st.st_size == size:
            return FileSpec(name, size, meta["sha256"], meta["blob_sha1"], lfs, path)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        if content is not None:
            chunks: Any = [content]
        else:
            chunks = _pseudo_random_chunks(seed, size)
        for chunk in chunks:
            f.write(chunk)
            sha256.update(chunk)
            sha1.update(chunk)
    os.replace(tmp, path)
    spec = FileSpec(name, size, sha256.hexdigest(), sha1.hexdigest(), lfs, path)
    meta = dict(want, sha256=spec.sha256, blob_sha1=spec.blob_sha1, mtime_ns=path.stat().st_mtime_ns)
    meta_path.write_text(json.dumps(meta))
    return spec


def _pseudo_random_chunks(seed: int, size: int) -> Any:
    """Seeded bytes: one random MiB, each copy prefixed with its index and xor-ed with a per-MiB random word,
    so that any two MiB differ and any misplaced range changes the hash."""
    rng = random.Random(seed)
    block = rng.randbytes(1 << 20)
    left, i = size, 0
    while left > 0:
        n = min(left, len(block))
        chunk = struct.pack(">QQ", i, rng.getrandbits(64)) + block[16:n]
        yield chunk[:n]
        left -= n
        i += 1


def _commit_sha(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


def _small_files(data_dir: Path, count: int) -> dict[str, FileSpec]:
    """`count` small regular (not LFS) files, `shards/NNNNN.json`, a few hundred bytes to a few kB each: a repo
    of many small files (tokenizer shards, per-layer configs), served straight from /resolve. Their contents are
    made in memory and hashed there; a file is written only when missing or of another size."""
    folder = data_dir / "small"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, FileSpec] = {}
    for i in range(count):
        name = f"shards/{i:05d}.json"
        pad = "x" * (200 + (i * 7919) % 3000)
        content = f'{{"shard": {i}, "pad": "{pad}"}}\n'.encode()
        path = folder / f"{i:05d}.json"
        try:
            fresh = path.stat().st_size != len(content)
        except OSError:
            fresh = True
        if fresh:
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)
        sha1 = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
        out[name] = FileSpec(name, len(content), hashlib.sha256(content).hexdigest(), sha1, False, path)
    return out


def default_world(
    data_dir: Path | str | None = None, big_size: int = 3 * 1024 * 1024, small_files: int = 0
) -> World:
    """The model (gated, manual), two commits (`main`, tag `v1.0`), and one ungated repo; files under data_dir.
    `small_files`: that many more small files in both of the model's commits (`shards/NNNNN.json`)."""
    data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="localhub-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    attrs = b"*.pth filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
    readme = (
        b"---\nlicense: cc-by-nc-sa-4.0\nextra_gated_prompt: You agree to the licence.\n---\n"
        b"# OpenAudio S1 mini (test copy)\n"
    )
    common = {
        ".gitattributes": _write_file(data_dir, ".gitattributes", attrs, 0, 1, False),
        "README.md": _write_file(data_dir, "README.md", readme, 0, 2, False),
        "special_tokens.json": _write_file(
            data_dir, "special_tokens.json", b'{"<|begin_of_text|>": 151643, "<|end_of_text|>": 151644}\n', 0, 3, False
        ),
        "tokenizer.tiktoken": _write_file(data_dir, "tokenizer.tiktoken", None, 200_000, 4, False),
        "model.pth": _write_file(data_dir, "model.pth", None, big_size, 5, True),
        "codec.pth": _write_file(data_dir, "codec.pth", None, 1024 * 1024 + 123, 6, True),
        **_small_files(data_dir, small_files),
    }
    new = dict(common, **{"config.json": _write_file(data_dir, "config.json", b'{"dim": 1024, "v": 2}\n', 0, 7, False)})
    old = dict(common, **{"config.json": _write_file(data_dir, "config.json", b'{"dim": 1024, "v": 1}\n', 0, 8, False)})
    main_sha, v1_sha = _commit_sha("openaudio-main"), _commit_sha("openaudio-v1.0")
    model = Repo(MODEL, "manual", {main_sha: new, v1_sha: old}, {"main": main_sha, "v1.0": v1_sha})
    tiny_sha = _commit_sha("tiny-main")
    tiny_files = {
        "config.json": _write_file(data_dir, "config.json", b'{"tiny": true}\n', 0, 9, False),
        "weights.bin": _write_file(data_dir, "weights.bin", None, 64 * 1024 + 7, 10, True),
    }
    tiny = Repo(TINY, False, {tiny_sha: tiny_files}, {"main": tiny_sha})
    t = TOKENS
    users = [
        User("alice", t["accepted_read"], "read", orgs=("fishfans",)),
        User("alice", t["accepted_write"], "write", orgs=("fishfans",)),
        User("alice", t["fine_grained_ok"], "fineGrained", can_read_gated=True, orgs=("fishfans",)),
        User("alice", t["fine_grained_no_gated"], "fineGrained", can_read_gated=False, orgs=("fishfans",)),
        User("pat", t["pending"], "read"),
        User("nora", t["not_accepted"], "read"),
        User("rex", t["rejected"], "read"),
    ]
    access = {
        ("alice", MODEL): "accepted",
        ("pat", MODEL): "pending",
        ("nora", MODEL): "none",
        ("rex", MODEL): "rejected",
    }
    return World({model.repo_id: model, tiny.repo_id: tiny}, {u.token: u for u in users}, access)


def gated_message(state: str, repo: str, fine_grained_refusal: bool = False) -> str:
    """The X-Error-Message of a 403 GatedRepo, per reason."""
    if fine_grained_refusal:
        return (
            "Please enable access to public gated repositories in your fine-grained token settings "
            "to view this repository."
        )
    if state == "pending":
        return f"Your request to access model {repo} is awaiting a review from the repo authors."
    if state == "rejected":
        return f"Your request to access model {repo} has been rejected by the repo's authors."
    return (
        f"Access to model {repo} is restricted and you are not in the authorized list. "
        f"Visit https://huggingface.co/{repo} to ask for access."
    )

