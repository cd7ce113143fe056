"""`bash setup.sh --demo [SCENARIO]`: the whole flow with no token and no network.

Starts the project's local hub (`python -m gatedfetch.localhub`, the stand-in for huggingface.co
that the tests use too) with a small fake gated model, runs the real setup against it into a
temporary folder with a fake token for the chosen scenario, shows what a user would see, and removes
everything it made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .options import PROJECT_DIR, Options
from .outcome import Outcome
from .report import Reporter


def run(opts: Options, rep: Reporter) -> Outcome:
    scenario = opts.demo or "granted"
    work = Path(tempfile.mkdtemp(prefix="openaudio-demo-"))
    # The project folder on the path even where the working directory is not (python -P, PYTHONSAFEPATH).
    path = os.pathsep.join(p for p in (str(PROJECT_DIR), os.environ.get("PYTHONPATH", "")) if p)
    hub = subprocess.Popen(
        [sys.executable, "-m", "gatedfetch.localhub", "--data-dir", str(work / "hub"),
         "--big-size", str(8 * 1024 * 1024)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=PROJECT_DIR,
        env=dict(os.environ, PYTHONPATH=path),
    )
    try:
        assert hub.stdout is not None
        line = hub.stdout.readline()
        if not line:
            rep.warn("the local demo hub did not start")
            return Outcome(exit_code=1)
        info = json.loads(line)
        token = info["tokens"][info["scenarios"][scenario]]
        rep.info(f"demo: scenario '{scenario}': a local hub at {info['url']} plays huggingface.co with a small fake")
        rep.info(f"demo: gated {info['model']}; a fake token is piped in as --token-stdin would; files go to {work}")
        rep.info("demo: ---- what `bash setup.sh` prints ----")
        home = work / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
        env.update(HOME=str(home), HF_ENDPOINT=info["url"], HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1")
        argv = [sys.executable, str(PROJECT_DIR / "auth_helper.py"), "--token-stdin", "--local-dir", str(work / "out")]
        argv += ["--json"] + [flag for flag, on in (("--quiet", opts.quiet), ("--check", opts.check)) if on]
        # The run's lines go straight to the terminal; its outcome (the JSON document) becomes this run's.
        done = subprocess.run(argv, input=token.encode(), env=env, cwd=PROJECT_DIR, stdout=subprocess.PIPE)
        try:
            outcome = Outcome.from_json(json.loads(done.stdout))
        except ValueError:
            outcome = Outcome(exit_code=done.returncode or 1)
        outcome.shown = True
        rep.info(f"demo: ---- removing {work} ----")
        if done.returncode and scenario != "granted":
            rep.info(
                f"demo: exit code {done.returncode} is this scenario's refusal, shown on purpose: the demo worked "
                "(`bash setup.sh --demo` shows a granted run)"
            )
        else:
            rep.info(f"demo: exit code {done.returncode}")
        return outcome
    finally:
        hub.terminate()
        try:
            hub.wait(timeout=10)
        except subprocess.TimeoutExpired:
            hub.kill()
        shutil.rmtree(work, ignore_errors=True)
