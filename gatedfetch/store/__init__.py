"""The bytes on disk: the one owner of the on-disk protocol the transfer and the copies brought in share.

A target folder's work folder (`<local_dir>/.gatedfetch`) holds, per content (named by its key: the expected
hash, else a digest of url and size, so another revision's bytes are never mixed in):

  partial/<key>.<host>.part     the bytes while they arrive, one partial per machine (hosts.py)
  partial/<key>.<host>.pieces   its piece record: per piece, the bytes on disk from its start (record.py)
  partial/<key>.<host>.copy     a copy of bytes already on this machine, being made (local_bytes.py)
  locks/<key>.lock              held while one run fetches or copies in that content (locks.py)
  done/<key>-<path digest>.json the marker: dest holds these verified bytes, unchanged since (markers.py)

The steps of one content, each one call:

  1. key = content_key(sha256, blob_sha1, url, size)
  2. lock = content_lock(work, key); try_lock(lock, work)   (False: another run has it; ask again later)
  3. read_marker(marker_path(work, key, path), path, size, dest)   (done meanwhile: trust it, stop here)
  4. adopt(work, key, size)          the fullest partial this machine may take over becomes its own
  5. part = Partial(partial_path(work, key), size); part.open()   the byte ranges already on disk
  6. part.plan(pieces); part.write(offset, data); part.note(piece)   data first, then its counter
  7. (the hash checked by the caller) part.finish(dest)   fsync, `move_into_place`, the folder fsync'ed
  8. write_marker(marker, path, dest, sha256, verified, source)
  9. lock.release()

A copy brought in instead takes steps 1-3, fills `copy_path(work, key)`, checks its hash, then
`move_into_place`, `write_marker` and `drop_partial` (this machine's partial of it is no longer needed).

A small file (at most `small.SMALL_FILE` bytes) skips steps 2-6 and 8: fetched whole into memory and verified
there, then `small.land` writes it and moves it into place; `settle` makes all of a run's small files durable
at once before the manifest lists them (see small.py for what a crash leaves after each step).

Only a complete, verified file is moved into place; a disk error anywhere is `disk_failure` (exit 9).
"""

from __future__ import annotations

from . import small
from .durable import FLUSH_EVERY, Flusher, fsync_dir, move_into_place, settle
from .hosts import (
    LOCAL_FS,
    adopt,
    bytes_on_disk,
    copy_path,
    drop_partial,
    fs_type,
    host_tag,
    locks_span_hosts,
    partial_path,
)
from .locks import content_lock, try_lock
from .markers import read_marker, write_marker
from .names import content_key, disk_failure, in_place, lock_path, marker_path, safe_dest
from .record import Partial, Piece, merge, read_record

__all__ = [
    "FLUSH_EVERY",
    "LOCAL_FS",
    "Flusher",
    "Partial",
    "Piece",
    "adopt",
    "bytes_on_disk",
    "content_key",
    "content_lock",
    "copy_path",
    "disk_failure",
    "drop_partial",
    "fs_type",
    "fsync_dir",
    "host_tag",
    "in_place",
    "lock_path",
    "locks_span_hosts",
    "marker_path",
    "merge",
    "move_into_place",
    "partial_path",
    "read_marker",
    "read_record",
    "safe_dest",
    "settle",
    "small",
    "try_lock",
    "write_marker",
]
