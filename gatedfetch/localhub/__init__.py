"""The local hub: the local stand-in for huggingface.co that `--demo` runs and the tests use.

Two HTTP servers on 127.0.0.1 that answer the real huggingface_hub client as huggingface.co does. Routes,
headers and error headers follow huggingface_hub 2.4's own source (`hf_api.py`, `file_download.py`,
`utils/_http.py`: the client maps errors on `X-Error-Code`, needs `X-Repo-Commit` and an ETag on HEAD) and
what the client sends on the wire: whoami-v2, auth-check, model info, tree (with `Link` paging), paths-info,
HEAD/GET /resolve with X-Repo-Commit, ETag, X-Linked-Etag/X-Linked-Size, a 302 to a second server (the
"CDN", another origin, so the client drops Authorization) for LFS files, Range on both servers. Gated repos
with per-user access states, token roles, switchable faults and settings. Its CDN behaves as users of the
Hub report the real one does (2025-2026): signed URLs that expire and are bound to the Range asked at
/resolve (403 otherwise), per-connection speed caps (`throttle_bps`), a delay before every answer
(`delay_ms`), and 206 answers shorter than asked (the `short` fault).

    world.py     users, tokens, repos and files; `default_world()` and its seeded contents; --demo scenarios
    faults.py    Fault, Settings, Req: what can be switched, and the record of each request
    handler.py   dispatch, responses, refusals, identity and read access
    cdn.py       /resolve and the CDN: signed range-bound URLs, files served with Range, throttle, faults
    routes.py    the API routes and the /_test/ control calls
    server.py    LocalHub: the two servers, their lifecycle and state
    __main__.py  `python -m gatedfetch.localhub`: run it, print one JSON line, serve until SIGTERM

Standard library only: it runs with any python3 >= 3.10.
"""

from __future__ import annotations

from .faults import Fault, Faults, Req, Settings
from .server import ExtraRoute, LocalHub
from .world import DEMO_SCENARIOS, MODEL, TINY, TOKENS, FileSpec, Repo, User, World, default_world, gated_message

__all__ = [
    "DEMO_SCENARIOS", "MODEL", "TINY", "TOKENS", "ExtraRoute", "Fault", "Faults", "FileSpec", "LocalHub", "Repo",
    "Req", "Settings", "User", "World", "default_world", "gated_message",
]
