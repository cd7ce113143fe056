"""The re-run of a complete copy, at its floor: one request, with the standard library only.

A re-run whose manifest says the copy is complete needs one fact from the Hub: the commit the revision names
now. Asking it through huggingface_hub costs its import (about 0.2 s of the 0.3 s a re-run took on a 2-core
machine, most of it `huggingface_hub.hf_api` and httpx), so this asks `GET {endpoint}/api/models/{repo}/revision/
{revision}` (the route `HfApi.model_info` calls; its JSON answer holds the commit as `sha`) over the transfer's
own stdlib transport (proxies from the environment, the token only to the endpoint's origin), with the checks'
read timeout. Any other answer (an error, a redirect to elsewhere, a proxy that wants more) is not judged here:
the caller goes the full way, through huggingface_hub, which names the cause.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from .settings import current


def current_commit(endpoint: str, token: str, repo: str, revision: str) -> str | None:
    """The commit `revision` of `repo` names now; None when the answer is anything but a plain yes."""
    from .transfer.http import Client  # the standard library's http.client, not huggingface_hub's httpx

    url = f"{endpoint.rstrip('/')}/api/models/{repo}/revision/{quote(revision, safe='')}"
    client = Client(min(current().read_timeout, current().speak_after))  # longer: the full way, which speaks
    try:
        resp = client.open(url, {"Authorization": f"Bearer {token}", "Accept": "application/json"})
        try:
            if resp.status != 200:
                return None
            body = bytearray()
            chunk = memoryview(bytearray(1 << 16))
            while (n := resp.readinto(chunk)) and len(body) < 8 << 20:  # a model's info is kilobytes
                body += chunk[:n]
        finally:
            resp.release()
        sha = json.loads(bytes(body)).get("sha")
    except Exception:  # any trouble: the full way names it
        return None
    finally:
        client.close()
    return sha if isinstance(sha, str) and len(sha) == 40 else None
