"""`python -m gatedfetch.localhub`: run the local hub until SIGTERM/SIGINT (what `bash setup.sh --demo` starts).

    python -m gatedfetch.localhub [--port N] [--cdn-port N] [--big-size BYTES] [--data-dir DIR]
                                  [--throttle-mbps X] [--delay-ms N] [--max-connections N]
                                  [--small-files N] [--cdn-delay-ms N] [--url-ttl S]

prints one JSON line on stdout (url, cdn_url, tokens, model, and scenarios: each `--demo` scenario's token
name) once both servers listen. While it runs, `POST /_test/settings` (JSON object of settings),
`POST /_test/faults` (JSON kwargs of `LocalHub.add_fault`), `POST /_test/requests` (what was asked so far) and
`POST /_test/clear` (faults, settings and
recorded requests back to the start) control it, from 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from .server import LocalHub
from .world import DEMO_SCENARIOS, MODEL, TOKENS, default_world


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m gatedfetch.localhub",
        description="Run the local hub: a stand-in for huggingface.co on 127.0.0.1.",
    )
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--big-size", type=int, default=3 * 1024 * 1024, help="size of model.pth in bytes")
    ap.add_argument("--data-dir", help="where the files are written (default: a temporary folder, removed on exit)")
    ap.add_argument("--throttle-mbps", type=float, default=0, help="cap each connection at this many MB/s (0: none)")
    ap.add_argument("--delay-ms", type=int, default=0, help="delay every answer by this many milliseconds")
    ap.add_argument("--max-connections", type=int, default=0,
                    help="the CDN answers 429 (Retry-After: 1) on a client's connections beyond this many open "
                    "(0: no limit)")
    ap.add_argument("--cdn-delay-ms", type=int, default=-1,
                    help="delay the CDN's answers by this many milliseconds instead (-1: as --delay-ms)")
    ap.add_argument("--url-ttl", type=float, default=3600.0, help="seconds a signed CDN URL stays good")
    ap.add_argument("--small-files", type=int, default=0, help="this many more small files in the model (shards/)")
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="localhub-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hub = None
    try:
        hub = LocalHub(default_world(data_dir, args.big_size, args.small_files), port=args.port, cdn_port=args.cdn_port)
        hub.settings.throttle_bps = int(args.throttle_mbps * 1e6) or None
        hub.settings.delay_ms = args.delay_ms
        hub.settings.cdn_delay_ms = args.cdn_delay_ms if args.cdn_delay_ms >= 0 else None
        hub.settings.cdn_url_ttl = args.url_ttl
        hub.settings.max_connections = args.max_connections or None
        hub.start()
        info = {"url": hub.url, "cdn_url": hub.cdn_url, "tokens": TOKENS, "model": MODEL, "scenarios": DEMO_SCENARIOS}
        print(json.dumps(info), flush=True)
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if hub is not None:
            hub.stop()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
