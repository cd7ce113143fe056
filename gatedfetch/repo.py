"""What the Hub says, as plain values: who a token is, a repo's files, what a revision holds. Standard library
only, so the steps that only pass these along (authorize, layout, the re-run) need not load huggingface_hub."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Identity:
    name: str
    role: str  # read | write | fineGrained | admin | unknown
    can_read_gated: bool | None = None  # fine-grained tokens only
    scoped: tuple[str, ...] = ()  # fine-grained: entities the token is scoped to with read permission


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int
    sha256: str | None
    blob_sha1: str | None


@dataclass
class Snapshot:
    repo: str
    revision: str
    commit: str
    gated: bool
    files: list[RepoFile]
    notes: list[str] = field(default_factory=list)
