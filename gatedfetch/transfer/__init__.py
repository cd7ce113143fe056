"""Verified, resumable, lock-safe transfer of a repo's files, over several streams per big file.

huggingface_hub does auth, metadata and URLs; this package owns the bytes, because the library's own
loop checks only byte counts, deletes partial files on failure, never resumes across runs (each
attempt writes a process-unique `.incomplete` file: huggingface_hub PR #4306), and reads one stream
per file through a slower httpx session. Plain HTTP(S) `/resolve` only, never Xet: huggingface_hub's
Xet path runs only when a server advertises Xet and checks no sha256 either, while the Hub serves
every file over `/resolve` (a redirect to its CDN, with Range), so that is the one path here.

  http       the one transport: keep-alive connections, redirects, the token only to the Hub
  location   one HEAD /resolve per file: its signed CDN URL for every piece, until it expires
  segments   how a file is cut into pieces (sized from the link); the hash that follows the contiguous prefix
  job        one file being fetched: lock, partial, pieces, hash, state; its verification
  streams    how many streams fetch at once: grown while the rate grows, cut on refusals and faults
  watch      the rate floor of an answer and the run's silence: never stuck
  body       an answer's bytes into a piece, read ahead; retry: backoff and the end of the attempts
  records    RemoteFile, FileResult, Cancelled
  fetch      the pool of streams across files and pieces, the retry loop of one piece

The bytes on disk (partials, piece records, locks, markers, the move into place) are gatedfetch.store's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fetch import fetch_all
    from .http import HttpRefused
    from .records import Cancelled, FileResult, RemoteFile, content_key
    from .streams import Usage

_WHERE = {"fetch_all": "fetch", "HttpRefused": "http", "Cancelled": "records", "FileResult": "records",
          "RemoteFile": "records", "content_key": "records", "Usage": "streams"}


_MODULES = ("body", "fetch", "http", "job", "location", "piece", "records", "retry", "segments", "small", "streams",
            "watch")


def __getattr__(name: str) -> Any:
    """The package's names, each imported on first use: `gatedfetch.transfer.http` alone (the re-run's one
    request) must not load the pool, the job and their dependencies."""
    import importlib

    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    if name in _MODULES:  # `transfer.fetch` as an attribute, as when the package imported it eagerly
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(name)

__all__ = [
    "Cancelled",
    "FileResult",
    "HttpRefused",
    "RemoteFile",
    "Usage",
    "content_key",
    "fetch_all",
]

