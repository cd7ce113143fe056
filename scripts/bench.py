#!/usr/bin/env python3
"""Benchmark: `bash setup.sh` against `hf download` and a raw `curl` GET, in one run, same hub.

    python scripts/bench.py [--size-mb 1024] [--rounds 3] [--out bench-out]

Starts the local test Hub (tests/hub.py) with a big model.pth, then alternates, each round:
  setup.sh  — the full flow (token, whoami, access check, verified download) into a fresh folder
  hf        — `hf download fishaudio/openaudio-s1-mini --local-dir …` (huggingface_hub's CLI)
  curl      — one raw GET of model.pth from the CDN to disk (no verification: the floor)
and prints medians, the ratios setup.sh/hf and setup.sh/curl, peak RSS of each, the re-run time,
and the bytes fetched again after a kill at 50%. Run it with the project's venv python
(`.venv/bin/python scripts/bench.py`, or the test venv): it needs huggingface_hub for `hf`.
Figures are noisy on a small machine: compare ratios from the same run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "fishaudio/openaudio-s1-mini"

# Runs a command and prints the peak RSS (KiB) of its largest descendant as the last stderr line.
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[1:])\n"
    "print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(p.returncode)\n"
)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command."""
    start = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    elapsed = time.perf_counter() - start
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"benchmark step failed ({p.returncode}): {' '.join(argv[:3])}…\n{err[-2000:]}")
    rss_kib = int(err.strip().splitlines()[-1].split()[1])
    return elapsed, rss_kib / 1024


def start_hub(size: int, data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "hub.py"), "--big-size", str(size), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the test hub did not start")
    return proc, json.loads(line)



def cdn_url_of(hub_url: str, token: str) -> str:
    """Ask the hub where it redirects model.pth (the CDN URL), as the client would."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(hub_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    conn.request("HEAD", f"/{MODEL}/resolve/main/model.pth", headers={"authorization": f"Bearer {token}"})
    r = conn.getresponse()
    location = r.getheader("location")
    conn.close()
    if not location:
        raise SystemExit("the hub did not redirect model.pth to its CDN")
    return location


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench-out"))
    args = ap.parse_args()

    hf = shutil.which("hf", path=str(Path(sys.executable).parent)) or shutil.which("hf")
    curl = shutil.which("curl")
    if not hf or not curl:
        raise SystemExit("needs `hf` (huggingface_hub) beside this python and `curl` on PATH")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=out))
    size = args.size_mb * 1024 * 1024
    hub, info = start_hub(size, work / "hubdata")
    try:
        tokens = info["tokens"]
        assert isinstance(tokens, dict)
        token = str(tokens["accepted_read"])
        home = work / "home"
        home.mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        base.update(
            HOME=str(home),
            HF_ENDPOINT=str(info["url"]),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            PYTHON=sys.executable,
            HF_HOME=str(home / "hfhome"),
        )
        with_token = dict(base, HF_TOKEN=token)
        cdn = cdn_url_of(str(info["url"]), token)
        results: dict[str, list[tuple[float, float]]] = {"setup.sh": [], "hf download": [], "curl": []}

        for i in range(args.rounds):
            for name in results:
                target = work / f"{name.split()[0]}-{i}"
                if name == "setup.sh":
                    argv = ["bash", str(ROOT / "setup.sh"), "--quiet", "--local-dir", str(target)]
                elif name == "hf download":
                    argv = [hf, "download", MODEL, "--local-dir", str(target)]
                else:
                    target.mkdir()
                    argv = [curl, "-s", "-f", "-o", str(target / "model.pth"), cdn]
                results[name].append(timed(argv, with_token))
                shutil.rmtree(target, ignore_errors=True)
                if name == "hf download":
                    shutil.rmtree(home / "hfhome", ignore_errors=True)

        # Re-run: a complete copy is on disk.
        keep = work / "rerun"
        timed(["bash", str(ROOT / "setup.sh"), "--quiet", "--local-dir", str(keep)], with_token)
        rerun = [timed(["bash", str(ROOT / "setup.sh"), "--quiet", "--local-dir", str(keep)], with_token)[0]
                 for _ in range(3)]
        shutil.rmtree(keep, ignore_errors=True)

        refetched, missing = kill_and_resume(work / "resume", with_token, size)

        s = median([t for t, _ in results["setup.sh"]])
        h = median([t for t, _ in results["hf download"]])
        c = median([t for t, _ in results["curl"]])
        lines = [
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}",
            f"file: model.pth {args.size_mb} MiB (+ small files), local test hub on 127.0.0.1, {args.rounds} rounds",
            "",
            "| run | median s | MB/s | peak RSS MB |",
            "|---|---|---|---|",
        ]
        for name, runs in results.items():
            med = median([t for t, _ in runs])
            rss = max(r for _, r in runs)
            lines.append(f"| {name} | {med:.2f} | {size / 1e6 / med:.0f} | {rss:.0f} |")
        lines += [
            "",
            f"setup.sh / hf download: {s / h:.2f}× (target ≤ 0.67)",
            f"setup.sh / curl: {s / c:.2f}× (target ≤ 1.5)",
            f"re-run of a complete copy: median {median(rerun):.2f} s (target ≤ 1 s)",
            f"resume after kill at 50%: fetched {refetched / 1e6:.1f} MB for {missing / 1e6:.1f} MB missing "
            f"({refetched / missing:.3f}×, target ≤ 1.05)",
        ]
        report = "\n".join(lines)
        print(report)
        (out / "bench.md").write_text(report + "\n")
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def kill_and_resume(target: Path, env: dict[str, str], size: int) -> tuple[int, int]:
    """SIGKILL setup.sh when model.pth's partial reaches half, then count the bytes the resumed run fetches."""
    hub_env = dict(env)
    proc = subprocess.Popen(
        ["bash", str(ROOT / "setup.sh"), "--quiet", "--local-dir", str(target)],
        env=hub_env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial_dir = target / ".gatedfetch" / "partial"
    have = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        sizes = [p.stat().st_size for p in partial_dir.glob("*.part")] if partial_dir.is_dir() else []
        have = max(sizes, default=0)
        if have >= size // 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    sizes = [p.stat().st_size for p in partial_dir.glob("*.part")] if partial_dir.is_dir() else []
    have = max(sizes, default=0)
    missing = size - have
    # The resumed run reports how many bytes it fetched in its JSON document (files[].fetched_bytes).
    p = subprocess.run(
        ["bash", str(ROOT / "setup.sh"), "--json", "--quiet", "--local-dir", str(target)],
        env=env,
        capture_output=True,
    )
    if p.returncode != 0:
        raise SystemExit(f"resumed run failed: {p.stderr.decode(errors='replace')[-2000:]}")
    doc = json.loads(p.stdout)
    fetched = sum(int(f.get("fetched_bytes", 0)) for f in doc["files"] if f["path"] == "model.pth")
    shutil.rmtree(target, ignore_errors=True)
    return fetched, max(missing, 1)


if __name__ == "__main__":
    sys.exit(main())
