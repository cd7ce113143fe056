"""Messages where the user's shell put them: closed standard streams, credentials in HF_ENDPOINT."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import Env


def shell(env: Env, redirect: str, extra: dict[str, str], out: str = "") -> subprocess.CompletedProcess[bytes]:
    environ = env.base_environ()
    environ.update(extra)
    cmd = f'bash "{env.project}/setup.sh" --json --local-dir "{out or env.out_dir}" {redirect}'
    return subprocess.run(["bash", "-c", cmd], env=environ, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


def test_json_with_stdout_closed_is_a_usage_error_not_a_traceback(env: Env, tokens: dict[str, str]) -> None:
    p = shell(env, ">&-", {"HF_TOKEN": tokens["accepted_read"]})
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert "standard output is closed" in err and "Traceback" not in err
    assert not env.out_dir.exists()  # found before anything was done


def test_stderr_closed_the_job_and_its_exit_code_still_stand(env: Env, tokens: dict[str, str]) -> None:
    ok = shell(env, "2>&-", {"HF_TOKEN": tokens["accepted_read"]})
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["status"] == "ready"
    refused = shell(env, "2>&-", {"HF_TOKEN": tokens["not_accepted"]}, out=f"{env.out_dir}-2")
    assert refused.returncode == 5
    assert json.loads(refused.stdout)["error"]["kind"]


def test_credentials_in_hf_endpoint_are_masked_everywhere(env: Env, tokens: dict[str, str]) -> None:
    password = "Pa55w0rdOfTheMirror"
    endpoint = env.hub.url.replace("http://", f"http://mirror-user:{password}@")
    r = env.run("--json", env={"HF_TOKEN": tokens["accepted_read"], "HF_ENDPOINT": endpoint})
    assert password not in r.text, r.text
    assert "mirror-user:****@" in r.err
    assert json.loads(r.out)["endpoint"].startswith("http://mirror-user:****@")
    for f in env.out_dir.rglob("*"):
        if f.is_file():
            assert password.encode() not in f.read_bytes(), f
