#!/usr/bin/env python3
"""Benchmark: `bash setup.sh` against `hf download`, `curl` and `aria2c -x8`, in one run, same hub.

    python scripts/bench.py [--size-mb 500] [--slow-size-mb 1024] [--rounds 3] [--small-files 3000]
                            [--links fresh,loopback,capped,slow,limited,many] [--out bench-out]

Starts the local hub (`python -m gatedfetch.localhub`) with a big model.pth, once per link model:
  fresh     no hub: a fresh clone's first `bash setup.sh` (builds .venv; no token) to its exit-3 message, the
            package cache warmed by one untimed clone first (target ≤ 2.5 s);
  loopback  no cap: what a loopback benchmark shows (it flatters a single stream);
  capped    each connection throttled to 50 MB/s and each answer delayed 20 ms, as the Hub's CDN
            behaves (users report 40-90 MB/s per stream from it; many streams reach several times that);
  slow      each connection throttled to 10 MB/s, 20 ms per answer (a distant or busy edge, a fast machine):
            speed comes from the number of streams; model.pth is --slow-size-mb. Runs setup.sh (the adaptive
            count), `setup.sh --connections 64` and `aria2c -x16 -s16` (no hf or curl: one stream, minutes);
  limited   as slow, and the CDN answers 429 (Retry-After: 1) on a client's connections beyond 8: setup.sh
            only; reports the streams it ended with (its --json).
  far       a user in Finland: the Hub's API answers 120 ms away, the CDN edge 10 ms, 50 MB/s per connection,
            signed URLs expiring after 20 s; model.pth is --slow-size-mb. setup.sh, `hf download` and
            `aria2c -x16` fed one resolved URL (asked anew before each run); the /resolve requests per file.
  distant   as far, every answer 150 ms away (the CDN too), URLs good for an hour.
On loopback and capped, each round alternates:
  setup.sh  the full flow (token, whoami, access check, verified download of every file) into a fresh folder
  hf        `hf download fishaudio/openaudio-s1-mini --local-dir …` (huggingface_hub's CLI, plain HTTP: the
            local hub has no Xet server)
  curl      one raw GET of model.pth from the CDN to disk (unverified: the single-stream floor)
  aria2c    `aria2c -x8 -s8 -k1M` on model.pth from the CDN (unverified; Debian package aria2, installed
            here when missing and apt-get can run)
and prints medians, ratios against the targets, and peak RSS; then, on the capped link, the re-run time
of a complete copy and the bytes fetched again after a kill at 50%. The link `many` is another story: the model
plus --small-files (3,000) small files, 20 ms per answer, no cap: setup.sh against `hf download`, then the
re-run of the complete copy (targets: ≤ 8 s, ≤ 1 s). Run it with the project's venv python
(`.venv-test/bin/python scripts/bench.py`): it needs huggingface_hub for `hf`. Compare ratios from one
run, not seconds across runs: a 2-core machine is noisy.
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
sys.path.insert(0, str(ROOT))
MODEL = "fishaudio/openaudio-s1-mini"
# MB/s per connection, ms per answer, the CDN's limit of connections per client (0: none)
LINKS = {"loopback": (0.0, 0, 0), "capped": (50.0, 20, 0), "slow": (10.0, 20, 0), "limited": (10.0, 20, 8),
         "many": (0.0, 20, 0), "fresh": (0.0, 0, 0), "far": (50.0, 120, 0), "distant": (50.0, 150, 0)}
# Far from the Hub: ms per answer of the CDN (its edge is near while the Hub's API is far), seconds a signed URL lasts
FAR = {"far": (10, 20.0), "distant": (150, 3600.0)}

# Runs a command and prints the peak RSS (KiB) of its largest descendant as the last stderr line.
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[1:])\n"
    "print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(p.returncode)\n"
)


def timed(argv: list[str], env: dict[str, str], out: list[str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command (its stdout appended to `out` when given)."""
    start = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *argv], env=env, stderr=subprocess.PIPE,
        stdout=subprocess.PIPE if out is not None else subprocess.DEVNULL,
    )
    if out is not None:
        out.append(p.stdout.decode(errors="replace"))
    elapsed = time.perf_counter() - start
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"benchmark step failed ({p.returncode}): {' '.join(argv[:3])}…\n{err[-2000:]}")
    rss_kib = int(err.strip().splitlines()[-1].split()[1])
    return elapsed, rss_kib / 1024


def ensure_aria2c() -> str | None:
    found = shutil.which("aria2c")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    print("bench: installing aria2 (Debian package)", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "aria2"],
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return shutil.which("aria2c")


def start_hub(
    size: int, data_dir: Path, mbps: float, delay_ms: int, max_connections: int = 0, small_files: int = 0,
    cdn_delay_ms: int = -1, url_ttl: float = 3600.0,
) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    argv = [sys.executable, "-m", "gatedfetch.localhub", "--big-size", str(size), "--data-dir", str(data_dir),
            "--throttle-mbps", str(mbps), "--delay-ms", str(delay_ms), "--max-connections", str(max_connections),
            "--small-files", str(small_files), "--cdn-delay-ms", str(cdn_delay_ms), "--url-ttl", str(url_ttl)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the local hub did not start")
    return proc, json.loads(line)


def cdn_url_of(hub_url: str, token: str) -> str:
    """Ask the hub where it redirects model.pth (a CDN URL signed for any range), as a client would."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(hub_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    conn.request("HEAD", f"/{MODEL}/resolve/main/model.pth", headers={"authorization": f"Bearer {token}"})
    location = conn.getresponse().getheader("location")
    conn.close()
    if not location:
        raise SystemExit("the hub did not redirect model.pth to its CDN")
    return location


def resolves(hub_url: str) -> int:
    """The /resolve requests (HEAD or GET) for model.pth the hub has seen so far."""
    import urllib.request

    req = urllib.request.Request(f"{hub_url}/_test/requests", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=10) as answer:
        asked = json.load(answer)["requests"]
    return sum(1 for q in asked
               if q["server"] == "hub" and "/resolve/" in q["path"] and q["path"].endswith("model.pth"))


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_env(home: Path, info: dict[str, object]) -> dict[str, str]:
    tokens = info["tokens"]
    assert isinstance(tokens, dict)
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "GATEDFETCH_"))}
    env.update(HOME=str(home), HF_ENDPOINT=str(info["url"]), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHON=sys.executable,
               HF_HOME=str(home / "hfhome"), HF_TOKEN=str(tokens["accepted_read"]))
    return env


def run_many(args: argparse.Namespace, work: Path, tools: dict[str, str]) -> list[str]:
    """The model plus many small files, 20 ms per answer, no cap: setup.sh and `hf download` in turn, each into a
    fresh folder; then the re-run of a complete copy."""
    mbps, delay, _ = LINKS["many"]
    hub, info = start_hub(args.size_mb * 1024 * 1024, work / "hub-many", mbps, delay, small_files=args.small_files)
    try:
        env = bench_env(work / "home-many", info)
        runs: dict[str, list[float]] = {"setup.sh": [], "hf download": []}
        for i in range(args.rounds):
            for tool in runs:
                target = work / f"many-{tool.split()[0]}-{i}"
                if tool == "setup.sh":
                    argv = ["bash", str(ROOT / "setup.sh"), "--quiet", "--local-dir", str(target)]
                else:
                    argv = [tools["hf"], "download", MODEL, "--local-dir", str(target)]
                runs[tool].append(timed(argv, env)[0])
                if not (tool == "setup.sh" and i == 0):
                    shutil.rmtree(target, ignore_errors=True)
        keep = work / "many-setup.sh-0"
        rerun = [timed(["bash", str(ROOT / "setup.sh"), "--quiet", "--local-dir", str(keep)], env)[0]
                 for _ in range(3)]
        shutil.rmtree(keep, ignore_errors=True)
        n = args.small_files + 7
        lines = [
            f"### many files: model.pth {args.size_mb} MiB + {args.small_files} small files ({n} in all), "
            f"{delay} ms per answer, no cap",
            "",
            "| run | runs s | median s |",
            "|---|---|---|",
        ]
        for tool, xs in runs.items():
            lines.append(f"| {tool} | {', '.join(f'{x:.2f}' for x in xs)} | {median(xs):.2f} |")
        lines.append(f"| re-run (setup.sh, complete copy) | {', '.join(f'{x:.2f}' for x in rerun)} | "
                     f"{median(rerun):.2f} |")
        floor = args.small_files * delay / 1000 / 16
        lines += [
            "",
            f"setup.sh / hf download: {median(runs['setup.sh']) / median(runs['hf download']):.2f}×; "
            f"first run target ≤ 8 s, re-run target ≤ 1 s; the floor with 16 streams is about {floor:.2f} s",
            "",
        ]
        return lines
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=10)


def run_fresh(args: argparse.Namespace, work: Path) -> list[str]:
    """A fresh clone's first `bash setup.sh` (no .venv, no token, a fresh HOME) to its exit-3 "no token" message:
    the environment's cost. The package cache is warmed by one untimed clone first, as on a machine that already
    installed these packages once."""
    def clone(i: int) -> Path:
        dest = work / f"fresh-{i}"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True)
        return dest

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING", "GATEDFETCH_", "PYTHON")) and k != "CI"}
    times, said = [], ""
    for i in range(args.rounds + 1):
        project, home = clone(i), work / f"fresh-home-{i}"
        home.mkdir()
        start = time.perf_counter()
        p = subprocess.run(["bash", str(project / "setup.sh")], env={**env, "HOME": str(home)},
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        took = time.perf_counter() - start
        if p.returncode != 3:
            raise SystemExit(f"fresh clone: setup.sh exited {p.returncode}, not 3:\n{p.stderr}")
        said = next((line for line in p.stderr.splitlines() if line.startswith("python: building")), said)
        if i:  # the first run warms the package cache
            times.append(took)
        shutil.rmtree(project, ignore_errors=True)
    return [
        "### first run of a fresh clone (warm package cache, no token): to the exit-3 message",
        "",
        "| run | runs s | median s |",
        "|---|---|---|",
        f"| bash setup.sh | {', '.join(f'{x:.2f}' for x in times)} | {median(times):.2f} |",
        "",
        f"target ≤ 2.5 s; {said.split(' (once')[0] if said else 'no build line seen'}",
        "",
    ]


def run_link(name: str, args: argparse.Namespace, work: Path, tools: dict[str, str]) -> list[str]:
    if name == "fresh":
        return run_fresh(args, work)
    if name == "many":
        return run_many(args, work, tools)
    mbps, delay, limit = LINKS[name]
    size = (args.slow_size_mb if name in ("slow", "limited", *FAR) else args.size_mb) * 1024 * 1024
    cdn_delay, ttl = FAR.get(name, (-1, 3600.0))
    hub, info = start_hub(size, work / f"hub-{name}", mbps, delay, limit, cdn_delay_ms=cdn_delay, url_ttl=ttl)
    try:
        home = work / f"home-{name}"
        env = bench_env(home, info)
        tokens = info["tokens"]
        assert isinstance(tokens, dict)
        runs: dict[str, list[tuple[float, float]]] = {"setup.sh": []}
        asked: list[int] = []  # /resolve requests for model.pth per setup.sh run
        if name in ("slow",):
            runs["setup.sh --connections 64"] = []
            if "aria2c" in tools:
                runs["aria2c -x16"] = []
        elif name in ("loopback", "capped"):
            runs.update({"hf download": [], "curl": []})
            if "aria2c" in tools:
                runs["aria2c -x8"] = []
        elif name in FAR:
            runs["hf download"] = []
            if "aria2c" in tools:
                runs["aria2c -x16"] = []
        used: list[str] = []  # setup.sh's --json documents: the streams it used
        for i in range(args.rounds):
            for tool in runs:
                target = work / f"{name}-{tool.split()[0]}-{i}"
                if tool.startswith("setup.sh"):
                    argv = ["bash", str(ROOT / "setup.sh"), "--quiet", "--json", "--local-dir", str(target),
                            *tool.split()[1:]]
                elif tool == "hf download":
                    argv = [tools["hf"], "download", MODEL, "--local-dir", str(target)]
                elif tool == "curl":
                    target.mkdir()
                    cdn = cdn_url_of(str(info["url"]), str(tokens["accepted_read"]))  # fresh: URLs expire
                    argv = [tools["curl"], "-s", "-f", "-o", str(target / "model.pth"), cdn]
                else:
                    x = tool.split("-x")[1]
                    cdn = cdn_url_of(str(info["url"]), str(tokens["accepted_read"]))
                    argv = [tools["aria2c"], "-q", f"-x{x}", f"-s{x}", "-k1M", "--file-allocation=none",
                            "--allow-overwrite=true", "-d", str(target), "-o", "model.pth", cdn]
                before = resolves(str(info["url"])) if tool == "setup.sh" else 0
                runs[tool].append(timed(argv, env, used if tool == "setup.sh" else None))
                if tool == "setup.sh":
                    asked.append(resolves(str(info["url"])) - before)
                shutil.rmtree(target, ignore_errors=True)
                shutil.rmtree(home / "hfhome" / "hub", ignore_errors=True)
        s = median([t for t, _ in runs["setup.sh"]])
        lines = [
            f"### {name}: " + ("no cap" if not mbps else f"{mbps:.0f} MB/s per connection, {delay} ms per answer"),
            "",
            "| run | median s | MB/s (model.pth) | peak RSS MB |",
            "|---|---|---|---|",
        ]
        for tool, xs in runs.items():
            med = median([t for t, _ in xs])
            lines.append(f"| {tool} | {med:.2f} | {size / 1e6 / med:.0f} | {max(r for _, r in xs):.0f} |")
        lines.append("")
        ratio = {tool: s / median([t for t, _ in xs]) for tool, xs in runs.items() if tool != "setup.sh"}
        streams = [json.loads(doc).get("streams") or {} for doc in used]
        lines.append("setup.sh streams (max/mean/final): "
                     + ", ".join(f"{s.get('max')}/{s.get('mean')}/{s.get('final')}" for s in streams))
        if name == "capped" and "aria2c -x8" in ratio:
            lines.append(f"setup.sh / aria2c -x8: {ratio['aria2c -x8']:.2f}× (target ≤ 1.0)")
        if name == "slow":
            if "aria2c -x16" in ratio:
                lines.append(f"setup.sh / aria2c -x16: {ratio['aria2c -x16']:.2f}× (target ≤ 0.5)")
            lines.append(f"setup.sh / setup.sh --connections 64: {ratio['setup.sh --connections 64']:.2f}× "
                         "(target ≤ 1.15)")
        lines.append("setup.sh /resolve requests for model.pth: " + ", ".join(str(n) for n in asked))
        if name in FAR:
            if "aria2c -x16" in ratio:
                lines.append(f"setup.sh / aria2c -x16: {ratio['aria2c -x16']:.2f}× (target ≤ 1.0)")
        if name == "limited":
            lines.append(f"setup.sh ended with at most {max(s.get('final', 0) for s in streams)} streams "
                         f"(target ≤ {limit})")
        if name == "loopback":
            lines.append(f"setup.sh / hf download: {ratio['hf download']:.2f}× (target ≤ 0.8)")
            lines.append(f"setup.sh / curl: {ratio['curl']:.2f}× (target ≤ 1.5)")
        others = ", ".join(f"{t} {r:.2f}×" for t, r in ratio.items())
        if others:
            lines.append(f"setup.sh against each: {others}")
        if name == "capped" or (len(args.links) == 1 and name == "loopback"):
            keep = work / f"{name}-rerun"
            timed(["bash", str(ROOT / "setup.sh"), "--quiet", "--local-dir", str(keep)], env)
            rerun = [timed(["bash", str(ROOT / "setup.sh"), "--quiet", "--local-dir", str(keep)], env)[0]
                     for _ in range(3)]
            shutil.rmtree(keep, ignore_errors=True)
            fetched, missing = kill_and_resume(work / f"{name}-resume", env, size)
            lines += [
                f"re-run of a complete copy: median {median(rerun):.2f} s (target ≤ 1 s)",
                f"resume after kill at 50%: fetched {fetched / 1e6:.1f} MB for {missing / 1e6:.1f} MB missing "
                f"({fetched / missing:.3f}×, target ≤ 1.05)",
            ]
        lines.append(f"peak RSS of setup.sh: {max(r for _, r in runs['setup.sh']):.0f} MB (target ≤ 200)")
        return lines + [""]
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=10)


def kill_and_resume(target: Path, env: dict[str, str], size: int) -> tuple[int, int]:
    """SIGKILL setup.sh when half of model.pth is on disk (by its piece record), then count the bytes
    the resumed run fetches (its --json document) against the bytes that were missing."""
    from gatedfetch.store import bytes_on_disk

    proc = subprocess.Popen(
        ["bash", str(ROOT / "setup.sh"), "--quiet", "--local-dir", str(target)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    work = target / ".gatedfetch"

    def have() -> int:
        parts = list((work / "partial").glob("*.part")) if (work / "partial").is_dir() else []
        # a partial is named <sha256>.<host>.part: the key is the part before the first dot
        return max((bytes_on_disk(work, p.name.split(".")[0], size) for p in parts if p.stat().st_size > 1 << 20),
                   default=0)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if have() >= size // 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    missing = size - have()
    p = subprocess.run(["bash", str(ROOT / "setup.sh"), "--json", "--quiet", "--local-dir", str(target)],
                       env=env, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"resumed run failed: {p.stderr.decode(errors='replace')[-2000:]}")
    doc = json.loads(p.stdout)
    fetched = sum(int(f.get("fetched_bytes", 0)) for f in doc["files"] if f["path"] == "model.pth")
    shutil.rmtree(target, ignore_errors=True)
    return fetched, max(missing, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=500, help="size of model.pth in MiB")
    ap.add_argument("--slow-size-mb", type=int, default=1024,
                    help="size of model.pth in MiB on slow, limited, far and distant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--links", default="fresh,loopback,capped,slow,limited,many,far,distant",
                    help="comma-separated: fresh, loopback, capped, slow, limited, many, far, distant")
    ap.add_argument("--small-files", type=int, default=3000, help="small files beside the model on the `many` link")
    ap.add_argument("--out", default=str(ROOT / "bench-out"))
    args = ap.parse_args()
    args.links = [x.strip() for x in args.links.split(",") if x.strip()]
    if not set(args.links) <= set(LINKS):
        raise SystemExit(f"--links: choose from {', '.join(LINKS)}")

    tools = {"hf": shutil.which("hf", path=str(Path(sys.executable).parent)) or shutil.which("hf"),
             "curl": shutil.which("curl"), "aria2c": ensure_aria2c()}
    if not tools["hf"] or not tools["curl"]:
        raise SystemExit("needs `hf` (huggingface_hub) beside this python and `curl` on PATH")
    found = {k: v for k, v in tools.items() if v}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=out))
    try:
        lines = [
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}",
            f"file: model.pth {args.size_mb} MiB ({args.slow_size_mb} MiB on slow and limited; + small files), "
            f"local hub on 127.0.0.1, {args.rounds} rounds",
            "" if "aria2c" in found else "aria2c: not found and not installable here; left out",
            "",
        ]
        for link in args.links:
            lines += run_link(link, args, work, found)
        report = "\n".join(lines)
        print(report)
        (out / "bench.md").write_text(report + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
