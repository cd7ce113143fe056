"""Many machines, one shared network folder, and a lock that does not lock (as on some network file systems):
each machine keeps its own partial, and verified files still land whole."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import MODEL, Env, hub_content

# Loaded by every Python started with this folder on PYTHONPATH: the machine's name comes from
# FAKE_HOSTNAME, and filelock's locks succeed without excluding anyone.
SITECUSTOMIZE = '''
import os, socket
if os.environ.get("FAKE_HOSTNAME"):
    socket.gethostname = lambda: os.environ["FAKE_HOSTNAME"]
import filelock

class NoLock:
    def __init__(self, *args, **kwargs):
        self.is_locked = False
    def acquire(self, *args, **kwargs):
        self.is_locked = True
        return self
    def release(self, *args, **kwargs):
        self.is_locked = False
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.release()

filelock.FileLock = NoLock

# ... and statfs says NFS, whose locks may not reach other machines: each machine keeps its own partial.
import ctypes
_CDLL = ctypes.CDLL

class _Libc:
    def __init__(self, inner):
        self._inner = inner
    def __getattr__(self, name):
        return getattr(self._inner, name)
    def statfs(self, path, buf):
        ctypes.memmove(buf, (0x6969).to_bytes(8, "little"), 8)
        return 0

ctypes.CDLL = lambda name, *a, **k: _Libc(_CDLL(name, *a, **k)) if name is None else _CDLL(name, *a, **k)
'''


def machine(env: Env, tmp_path: Path, name: str, token: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {"PYTHONPATH": str(site), "FAKE_HOSTNAME": name, "HF_TOKEN": token}


def test_a_second_machine_never_writes_the_first_ones_partial(env: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    big = env.hub.repo(MODEL).files()["model.pth"]
    work = env.out_dir / ".gatedfetch"
    env.hub.settings.throttle_bps = 1_000_000
    proc = env.start("--connections", "1", env=machine(env, tmp_path, "node-a", tokens["accepted_read"]))
    part_a = work / "partial" / f"{big.sha256}.node-a.part"
    deadline = time.monotonic() + 60
    while (not part_a.exists() or part_a.stat().st_size < big.size // 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = part_a.read_bytes()
    assert big.size // 3 <= len(before) < big.size

    env.hub.settings.throttle_bps = None
    r = env.run("--json", env=machine(env, tmp_path, "node-b", tokens["accepted_read"]))
    assert r.code == 0, r.err
    assert (env.out_dir / "model.pth").read_bytes() == hub_content(env.hub)["model.pth"]
    assert r.json()["files"][[f["path"] for f in r.json()["files"]].index("model.pth")]["resumed_from"] == 0
    assert part_a.read_bytes() == before  # node-a's partial is node-a's to resume


def test_two_machines_at_once_with_a_lock_that_does_not_lock(env: Env, tokens: dict[str, str], tmp_path: Path) -> None:
    env.hub.settings.throttle_bps = 4_000_000
    procs = [
        env.start(env=machine(env, tmp_path, name, tokens["accepted_read"]), output=subprocess.PIPE)
        for name in ("node-a", "node-b")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()
    content = hub_content(env.hub)
    for path, data in content.items():
        assert (env.out_dir / path).read_bytes() == data
