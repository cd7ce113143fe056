"""The plain records of a transfer: a file to fetch, what came of it, and the stop of a run."""

from __future__ import annotations

from dataclasses import dataclass

from .. import store


@dataclass(frozen=True)
class RemoteFile:
    path: str  # posix path inside the repo, e.g. "model.pth"
    size: int  # expected size in bytes
    url: str  # the resolve URL (built by the caller)
    sha256: str | None  # expected sha256 (LFS oid) when the Hub gives one
    blob_sha1: str | None  # expected git blob sha1 for regular files


@dataclass
class FileResult:
    path: str
    size: int
    sha256: str  # sha256 of the content (always computed)
    verified: bool  # True when checked against sha256 or blob_sha1 from the Hub
    fetched_bytes: int  # bytes received over the network in this run
    resumed_from: int  # bytes reused from a partial file of an earlier run
    notes: tuple[str, ...] = ()  # warnings for the user (the file is good)
    source: str = ""  # when another run put the file in place meanwhile: where it got the bytes (else "")


class Cancelled(Exception):
    """The transfer was stopped because another file failed or the user interrupted."""


def content_key(rf: RemoteFile) -> str:
    return store.content_key(rf.sha256, rf.blob_sha1, rf.url, rf.size)
