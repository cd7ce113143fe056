"""How a file is cut into pieces, and the hash that follows the contiguous prefix of done pieces.

Why pieces at all: a CDN caps each connection far below a machine's link (users of the Hub report
40-90 MB/s per stream from its CDN in 2025-2026, while aria2c -x8 and hf_xet, with many ranged
streams, reach about 5x that on the same machines). So a big file comes over several connections at
once, each with its own `Range`.

Why many small pieces rather than one per connection: sha256 is strictly sequential, so the hash can
only follow the bytes that are contiguous from the start. Streams take pieces in file order, so the
done prefix advances steadily just behind the streams and the hash keeps up while the file arrives;
with one piece per connection it could start on piece 2 only when piece 1 is complete, leaving most
of the file to hash after the last byte.
"""

from __future__ import annotations

import mmap
import os
import threading

from ..digest import Digest
from ..store import Piece

MiB = 1 << 20
MIN_PIECE = 4 * MiB  # below this a ranged request costs more in round trips than it gains
MAX_PIECE = 64 * MiB
PIECES_PER_STREAM = 4  # enough that streams finish together (the last piece is short), few round trips
HASH_READ = 8 * MiB  # the hash reads the written bytes back in slices of this size


def piece_size(size: int, connections: int) -> int:
    """The length of one piece of a file of `size` bytes fetched over `connections` streams; 0: don't cut."""
    if connections <= 1 or size < 2 * MIN_PIECE:
        return 0
    want = size // (connections * PIECES_PER_STREAM)
    want = max(MIN_PIECE, min(MAX_PIECE, want))
    return (want + MiB - 1) // MiB * MiB


ROUND_TRIP_SHARE = 0.1  # a piece's wait for its answer costs at most this share of its time
# A piece sized from the link leaves at least this many pieces of a file: the hash follows the done prefix, so
# pieces that all end together leave the whole file to hash after the last byte. Measured, 1 GiB, 50 MB/s per
# connection, 150 ms per answer, 2 cores: 8 pieces (64 MiB) 3.2-3.4 s of transfer, 32 (32 MiB) 2.4-2.9 s,
# 64 (16 MiB) 2.5 s.
LINK_PIECES = 64


def link_piece(cut: int, size: int, rate: float, rtt: float | None) -> int:
    """The piece length for a link where one stream runs at `rate` bytes/s and each request waits `rtt` seconds for
    its answer: long enough that the wait costs at most ROUND_TRIP_SHARE of a piece's time (length >= rate x rtt
    x 9), never shorter than `cut`, never longer than MAX_PIECE or a LINK_PIECES-th of the file. On a CDN 10 ms
    away at 50 MB/s a stream: 5 MiB; 150 ms away: 64 MiB for a big file (a 4 MiB piece would spend 64 % of its
    time waiting), 16 MiB for 1 GiB (a round trip then costs 31 % of a piece: more streams make up for it).
    Memory does not grow with it: a stream reads into the same buffers whatever its piece."""
    if not cut or rate <= 0 or not rtt or rtt <= 0:
        return cut
    want = rate * rtt * (1 - ROUND_TRIP_SHARE) / ROUND_TRIP_SHARE
    want = min(want, MAX_PIECE, size // LINK_PIECES)
    return max(cut, int(want + MiB - 1) // MiB * MiB)


def plan(size: int, done: list[tuple[int, int]], cut: int) -> list[Piece]:
    """Pieces that tile [0, size): each done range as a complete piece, each gap cut in `cut`-sized
    pieces (one piece per gap when `cut` is 0)."""
    pieces: list[Piece] = []
    pos = 0
    for a, b in [*done, (size, size)]:
        while pos < a:
            end = a if not cut or a - pos < cut + cut // 2 else pos + cut  # no sliver at the end of a gap
            pieces.append(Piece(pos, end))
            pos = end
        if b > a:
            pieces.append(Piece(a, b, b - a))
        pos = max(pos, b)
    return pieces


def recut(pieces: list[Piece], held: set[int], size: int, cut: int) -> list[Piece] | None:
    """`pieces` with their untouched tail (no byte, none of them `held`: ids of pieces a stream holds) cut anew in
    `cut`-long pieces; None when there is no such tail. The pieces before it are kept as they are."""
    k = len(pieces)
    while k > 0 and not pieces[k - 1].done and id(pieces[k - 1]) not in held:
        k -= 1
    if k >= len(pieces):
        return None
    start = pieces[k].start
    return pieces[:k] + [p for p in plan(size, [(0, start)] if start else [], cut) if p.start >= start]


class PrefixHasher:
    """A `Digest` over a file's bytes in order, in its own thread.

    The streams call `reach(n)` when the first n bytes are all on disk; the thread reads them back
    (from the page cache: just written) and hashes them. sha256 runs at about 1 GB/s on one core and
    releases the GIL on large buffers, so it keeps up with the network on another core."""

    def __init__(self, fd: int, size: int, digest: Digest) -> None:
        self._fd = fd
        self.size = size
        self.digest = digest
        self.hashed = 0
        self.error: OSError | None = None
        self._target = 0
        self._busy = False  # a slice is being hashed (by the thread or by `offer`)
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="gatedfetch-hash", daemon=True)
        self._thread.start()

    def reach(self, prefix: int) -> None:
        with self._cond:
            if prefix > self._target:
                self._target = prefix
                self._cond.notify_all()

    def offer(self, pos: int, data: memoryview) -> None:
        """`data` was just written at `pos`: hash it here and now if every byte before it is hashed and the
        thread is not at work, from the buffer it came in rather than read back (the stream that writes at
        the prefix, every stream of a one-stream file, hashes as the old single-stream loop did)."""
        with self._cond:
            if self._busy or self.hashed != pos:
                return
            self._busy = True
        try:
            self._update(data)
        finally:
            with self._cond:
                self.hashed += len(data)
                self._busy = False
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while (self.hashed >= self._target or self._busy) and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                upto = self._target
                self._busy = True
            try:
                n = self._hash_slice(upto)
            except OSError as exc:
                with self._cond:
                    self.error = exc
                    self._busy = False
                    self._cond.notify_all()
                return
            with self._cond:
                self.hashed += n
                self._busy = False
                self._cond.notify_all()

    def _hash_slice(self, upto: int) -> int:
        """Hash the next slice below `upto`; its length. Mapped, not copied: the bytes are hashed where
        they lie in the page cache (a read-back would copy every byte once more)."""
        start = self.hashed
        base = start - start % mmap.ALLOCATIONGRANULARITY
        length = min(upto, start + HASH_READ) - base
        try:
            mapped = mmap.mmap(self._fd, length, offset=base, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # a filesystem that cannot map: read it back instead
            data = os.pread(self._fd, min(HASH_READ, upto - start), start)
            if not data:
                raise OSError(0, f"the partial ends at {start} bytes, before {upto}") from None
            self._update(memoryview(data))
            return len(data)
        with mapped, memoryview(mapped) as whole, whole[start - base :] as chunk:
            self._update(chunk)
            return len(chunk)

    def _update(self, chunk: memoryview) -> None:
        self.digest.update(chunk)

    def wait(self, cancelled: threading.Event, poll: float = 0.2) -> None:
        """Block until every byte is hashed (or the hash failed, or `cancelled` is set)."""
        with self._cond:
            while self.hashed < self.size and self.error is None and not cancelled.is_set():
                self._cond.wait(poll)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
