"""What a file's bytes are checked against, hashed as they pass: the transfer, the copies brought in from this
machine and the blobs of huggingface_hub's cache all check with the one `Digest`."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20  # bytes read at a time when a whole file is hashed (and copied: local_bytes)


class Digest:
    """What a file's bytes are checked against: the sha256 the Hub lists (LFS files), else the git blob sha1
    it lists (small files; the hash of "blob <size>\\0" and the bytes). The transfer and the reuse of local
    copies both check with it."""

    def __init__(self, size: int, sha256: str | None, blob_sha1: str | None) -> None:
        self.expected = (sha256 or "").lower() or None
        self.expected_sha1 = None if self.expected else (blob_sha1 or "").lower() or None
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False) if self.expected_sha1 else None

    def update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)

    def update_from(self, path: Path) -> Digest:
        """Hash the whole file at `path`, in CHUNK reads; OSError when it cannot be read."""
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                self.update(chunk)
        return self

    @property
    def checked(self) -> bool:
        """Whether the Hub listed a hash to check against (else only the size was checked)."""
        return bool(self.expected or self.expected_sha1)

    def mismatch(self) -> tuple[str, str, str] | None:
        """(which hash, expected, got) when the bytes are not the listed ones; None when they are, or when
        the Hub listed no hash."""
        if self.expected:
            got = self.sha256.hexdigest()
            return None if got == self.expected else ("sha256", self.expected, got)
        if self.sha1 is not None and self.expected_sha1:
            got = self.sha1.hexdigest()
            return None if got == self.expected_sha1 else ("git blob sha1", self.expected_sha1, got)
        return None
