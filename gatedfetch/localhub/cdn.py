"""Files: /resolve on the hub (a 302 to the CDN for LFS files, the bytes for the others) and the CDN's
signed URLs, bound to the Range asked at /resolve and to an expiry (403 otherwise), as users of the Hub
report its CDN does. Range (206, 416), per-connection speed caps and byte-level faults (flip, reset, close,
short, a shifted Content-Range) apply to both servers."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from .handler import Handler, Refusal
from .world import FileSpec, gated_message


class FileServing(Handler):
    def _resolve(self, method: str, repo_id: str, revision: str, file_path: str) -> None:
        user = self.user()
        repo = self._repo(repo_id)
        sha = self._commit(repo, revision)
        self._require_read(repo, user)
        if repo.gated and self.hub.settings.mirror_gated_refusal:
            raise Refusal(403, {"X-Error-Code": "GatedRepo", "X-Error-Message": gated_message("none", repo_id)})
        spec = repo.commits[sha].get(file_path)
        if spec is None:
            raise Refusal(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha,
                                 "X-Error-Message": "Entry not found"})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{spec.blob_sha1}"', "Accept-Ranges": "bytes"}
        if spec.lfs:
            headers.update({"ETag": f'"{spec.sha256}"', "X-Linked-Etag": f'"{spec.sha256}"',
                            "X-Linked-Size": str(spec.size)})
            if self.hub.settings.redirect_lfs:
                # A signed, expiring URL on another origin, as the real Hub gives (cdn-lfs / cas-bridge).
                disposition = f"inline; filename*=UTF-8''{quote(Path(spec.path).name)}; " \
                              f'filename="{Path(spec.path).name}";'
                # Like the Hub's CDN: the URL is good for the Range this request asked (any range when it
                # asked none) and for a limited time; the CDN answers 403 otherwise.
                expires = int(time.time() + self.hub.settings.cdn_url_ttl)
                query = urlencode({
                    "response-content-disposition": disposition,
                    "Expires": str(expires),
                    "Signature": self.hub.sign(spec.sha256, self.headers.get("range", ""), expires),
                    "Key-Pair-Id": "KTESTHUBCDN",
                })
                location = f"{self.hub.cdn_url}/repos/{_repo_dir(repo_id)}/{spec.sha256}?{query}"
                self.send_bytes(302, b"", {"Location": location, **headers}, "text/plain; charset=utf-8")
                return
        self._serve_file(method, spec, headers)

    def _cdn_spec(self) -> FileSpec | None:
        sha256 = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        for repo in self.hub.world.repos.values():
            for files in repo.commits.values():
                for spec in files.values():
                    if spec.lfs and spec.sha256 == sha256:
                        return spec
        return None

    def _cdn(self, method: str) -> None:
        spec = self._cdn_spec()
        if spec is None or method not in ("GET", "HEAD") or self.segments[:1] != ["repos"]:
            raise Refusal(404, {}, "NoSuchKey")
        try:
            expires = int(self.query.get("Expires", ["0"])[-1])
        except ValueError:
            expires = 0
        signature = self.query.get("Signature", [""])[-1]
        if expires < time.time():
            raise Refusal(403, {}, "Request has expired")
        if not any(hmac.compare_digest(signature, self.hub.sign(spec.sha256, r, expires))
                   for r in ("", self.headers.get("range", ""))):
            raise Refusal(403, {}, "Auth failed: invalid range")
        headers = {"ETag": f'"{spec.sha256}"', "Accept-Ranges": "bytes",
                   "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"}
        disposition = self.query.get("response-content-disposition")
        if disposition:
            headers["Content-Disposition"] = disposition[-1]
        self._serve_file(method, spec, headers)

    def _serve_file(self, method: str, spec: FileSpec, headers: dict[str, str]) -> None:
        settings = self.hub.settings
        start, end, status = 0, spec.size - 1, 200
        rng = self.headers.get("range")
        if rng and not settings.ignore_range:
            parsed = _parse_range(rng, spec.size)
            if parsed is not None:
                start, end = parsed
                if self.fault is not None and self.fault.short is not None:
                    end = min(end, start + self.fault.short - 1)
                status = 206
                shift = self.fault.shift_range or 0 if self.fault is not None else 0
                headers["Content-Range"] = f"bytes {start + shift}-{end}/{spec.size}"
        length = end - start + 1
        headers.setdefault("Content-Type", "application/octet-stream")
        if settings.no_content_length and method == "GET":
            headers["Connection"] = "close"
            self.close_connection = True
        else:
            headers["Content-Length"] = str(length)
        self._start(status, headers)
        if method == "HEAD":
            return
        self._send_body(spec, start, length)

    def _send_body(self, spec: FileSpec, start: int, length: int) -> None:
        fault = self.fault
        throttle = self.hub.settings.throttle_bps
        reset_after = fault.reset_after if fault else None
        close_after = fault.close_after if fault else None
        slow_after = fault.slow_after if fault else None
        freeze_after = fault.freeze_after if fault else None
        cut = min((n for n in (reset_after, close_after) if n is not None), default=None)
        flip_at = fault.flip_at if fault else None
        sock = self.connection
        sent = 0
        limit = length if cut is None else min(length, cut)
        # Zero-copy (the kernel moves the bytes), so that the server's own CPU is not what limits a
        # benchmark; throttled: slices of 1/200 s of the rate, each sent on time. A flipped byte goes alone.
        step = max(64 * 1024, throttle // 200) if throttle else limit
        t0 = time.monotonic()
        with spec.data_path.open("rb") as f:
            while sent < limit:
                pos = start + sent
                want = min(step, limit - sent)
                if freeze_after is not None and sent >= freeze_after:
                    self.hub.stopping.wait()  # nothing more, the socket kept open: a network gone black
                    return
                if slow_after is not None and sent >= slow_after:
                    if self.hub.stopping.wait(0.2):
                        return
                    want = 1
                to_fault = [n - sent for n in (slow_after, freeze_after) if n is not None and n > sent]
                want = min([want, *to_fault])  # a slice ends where a fault begins
                if pos == flip_at:
                    f.seek(pos)
                    sock.sendall(bytes([f.read(1)[0] ^ 0xFF]))
                    n = 1
                else:
                    if flip_at is not None and pos < flip_at < pos + want:
                        want = flip_at - pos
                    n = sock.sendfile(f, offset=pos, count=want)
                    if n == 0:
                        break
                sent += n
                self.req.bytes_sent = sent
                ahead = sent / throttle - (time.monotonic() - t0) if throttle else 0
                if ahead > 0:
                    time.sleep(ahead)
        if cut is not None and cut <= sent:
            if cut == reset_after:
                self._reset()
            self._close()


def _repo_dir(repo_id: str) -> str:
    h = hashlib.sha256(repo_id.encode()).hexdigest()
    return f"{h[:2]}/{h[2:4]}/{h[4:20]}"




def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive, or None to ignore the header (not bytes=, several ranges, junk); 416 if unsatisfiable."""
    unsatisfiable = Refusal(416, {"Content-Range": f"bytes */{size}"}, "Requested Range Not Satisfiable")
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    a, sep, b = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                raise unsatisfiable
            start, end = max(0, size - n), size - 1
        else:
            start = int(a)
            end = min(int(b), size - 1) if b else size - 1
    except ValueError:
        return None
    if start < 0 or (b and a and int(b) < start):
        return None
    if start >= size:
        raise unsatisfiable
    return start, end

