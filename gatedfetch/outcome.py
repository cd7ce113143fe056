"""What a run found and did: the one result every path of the flow returns, success or failure, and the
`--json` contract (`Outcome.to_json`), defined here and nowhere else.

    status          ready | would_download (--check) | needs_token (--prepare) | error
    exit_code       0, or the failure's code (see `bash setup.sh --help`)
    endpoint, model, revision, local_dir
    token_source    stdin | env | dotenv | stored | prompt (null: none was needed or found)
    user, token_role
                    from whoami; null when it was not asked (the re-run shortcut, offline) or not offered
    access_checked  true once the gated access was checked in this run
    commit          the resolved commit
    files           [{path, size, sha256, verified, source, fetched_bytes?, resumed_from?, copied_bytes?}]
                    source: download | partial | hf-cache | reuse-from | in-place; copied_bytes (files
                    reused in this run): bytes written to put it in place (0 for a hard link)
    local_complete  --check only: whether the local copy is already complete
    hf_cache_snapshot
                    --also-cache only: the snapshot folder in huggingface_hub's cache, when every file
                    is in it
    timings         {environment, checks, transfer, total}: seconds (environment: from setup.sh's start to the
                    helper's; checks: token, whoami, access, file list, plan; transfer: reuse and download)
    streams         {max, mean, final}: the download's streams at once (a run that downloaded): at most, on average
                    while any was busy (one decimal), and the count the run ended with (it adapts: --connections
                    is the ceiling)
    error           {kind, message, fix, details?} on failure
    warnings        every warning printed, in order
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .failures import Failure

# The fields every document has once the flags were read, in this order (after status and exit_code).
FIELDS = ("endpoint", "model", "revision", "local_dir", "token_source", "user", "token_role", "access_checked",
          "commit", "files")


@dataclass
class Outcome:
    endpoint: str | None = None
    model: str | None = None
    revision: str | None = None
    local_dir: str | None = None
    status: str = "error"
    exit_code: int = 1
    token_source: str | None = None
    user: str | None = None
    token_role: str | None = None
    access_checked: bool = False
    commit: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    local_complete: bool | None = None
    hf_cache_snapshot: str | None = None
    error: dict[str, Any] | None = None
    timings: dict[str, float] | None = None
    streams: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)
    shown: bool = field(default=False, compare=False)  # a child run (the demo's) already printed its lines

    @classmethod
    def begin(cls, opts: Any, endpoint: str) -> Outcome:
        """What is known once the flags are read (`opts`: an `options.Options`)."""
        return cls(endpoint=endpoint, model=opts.model, revision=opts.revision, local_dir=str(opts.local_dir))

    def done(self, status: str = "ready") -> Outcome:
        self.status, self.exit_code, self.error = status, 0, None
        return self

    def failed(self, failure: Failure) -> Outcome:
        self.status, self.exit_code, self.error = "error", failure.exit_code, failure.as_dict()
        return self

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": self.status, "exit_code": self.exit_code}
        if self.endpoint is not None:  # known once the flags were read
            doc.update({name: getattr(self, name) for name in FIELDS})
        for name in ("local_complete", "hf_cache_snapshot", "timings", "streams", "error"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        doc["warnings"] = self.warnings
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Outcome:
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__ and k != "shown"}
        return cls(**known)
