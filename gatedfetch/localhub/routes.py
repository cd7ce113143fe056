"""The hub's API routes, as huggingface_hub 2.4 calls them: whoami-v2, auth-check (read and write), model
info (by revision, file metadata with `blobs=true`), tree (with `Link` paging), paths-info, /resolve (cdn.py),
routes a hub adds (`LocalHub.extra_routes`) and the control calls under /_test/."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .cdn import FileServing
from .handler import Refusal, invalid_credentials, not_found, repo_not_found
from .world import FileSpec, Repo


class Routes(FileServing):
    def route(self, method: str) -> None:
        if self.server_name == "cdn":
            self._cdn(method)
        else:
            self._hub(method)

    def _hub(self, method: str) -> None:
        seg = self.segments
        for prefix, extra in self.hub.extra_routes.items():
            parts = prefix.split("/")
            if seg[: len(parts)] == parts:
                return extra(self, method, seg[len(parts) :])
        if seg[:2] == ["api", "whoami-v2"] and len(seg) == 2 and method in ("GET", "HEAD"):
            return self._whoami()
        if seg == ["api", "agent-harnesses"] and method == "GET":
            # huggingface_hub 2.4 asks for this registry to name the tool that runs it in its user agent
            # (utils/_detect_agent.py) and caches it in $HF_HOME; answered as the Hub does, so a test sees both.
            return self.send_json(200, {"standardEnvVars": ["AI_AGENT", "AGENT"], "harnesses": {}})
        if seg[:2] == ["api", "models"] and len(seg) >= 4:
            return self._api_models(method, f"{seg[2]}/{seg[3]}", seg[4:])
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise not_found()

    def _control(self, method: str, path: str) -> None:
        if method != "POST" or self.client_address[0] != "127.0.0.1":
            raise not_found()
        try:
            body = json.loads(self.body_in or b"{}")
        except ValueError as e:
            raise Refusal(400, {}, f"bad JSON: {e}") from e
        if not isinstance(body, dict):
            raise Refusal(400, {}, "expected a JSON object")
        settings = self.hub.settings
        if path == "/_test/settings":
            known = {f.name for f in dataclasses.fields(settings)}
            unknown = sorted(set(body) - known)
            if unknown:
                raise Refusal(400, {}, f"unknown settings: {', '.join(unknown)}")
            for k, v in body.items():
                setattr(settings, k, v)
        elif path == "/_test/faults":
            try:
                self.hub.add_fault(**body)
            except (TypeError, ValueError) as e:
                raise Refusal(400, {}, str(e)) from e
        elif path == "/_test/requests":  # what was asked so far (no query: a signed URL's is a credential)
            with self.hub.lock:
                asked = [{"server": q.server, "method": q.method, "path": q.path.split("?", 1)[0],
                          "range": q.headers.get("range"), "status": q.status} for q in self.hub.requests]
            self.send_json(200, {"requests": asked})
            return
        elif path == "/_test/clear":
            self.hub.clear_faults()
            settings.reset()
            self.hub.clear_requests()
        else:
            raise not_found()
        self.send_json(200, {"ok": True, "settings": dataclasses.asdict(settings)})

    def _whoami(self) -> None:
        if not self.hub.settings.whoami:
            raise not_found()
        user = self.user()
        if user is None:
            raise invalid_credentials()
        token: dict[str, Any] = {
            "displayName": f"{user.name}-{user.role}",
            "role": user.role,
            "createdAt": "2025-06-01T00:00:00.000Z",
        }
        if user.role == "fineGrained":
            token["fineGrained"] = {
                "canReadGatedRepos": user.can_read_gated,
                "global": ["discussion.write", "post.write"],
                "scoped": [{"entity": {"type": "user", "name": user.name}, "permissions": ["repo.content.read"]}],
            }
        self.send_json(200, {
            "type": "user",
            "id": hashlib.md5(user.name.encode()).hexdigest()[:24],
            "name": user.name,
            "fullname": user.name.title(),
            "isPro": False,
            "canPay": False,
            "emailVerified": True,
            "orgs": [{"type": "org", "name": o, "fullname": o.title(), "roleInOrg": "read"} for o in user.orgs],
            "auth": {"type": "access_token", "accessToken": token},
        })

    def _api_models(self, method: str, repo_id: str, tail: list[str]) -> None:
        # [] | revision/{rev} | tree/{rev}[/path] | auth-check[/write] | paths-info/{rev}
        if tail[:1] == ["auth-check"] and method in ("GET", "HEAD"):
            return self._auth_check(repo_id, write=tail[1:] == ["write"])
        self.user()  # 401 for a token the Hub does not know, as everywhere
        repo = self._repo(repo_id)
        if method in ("GET", "HEAD") and (not tail or (tail[0] == "revision" and len(tail) >= 2)):
            return self._info(repo, self._commit(repo, "/".join(tail[1:]) or "main"))
        if tail[:1] == ["tree"] and len(tail) >= 2 and method in ("GET", "HEAD"):
            return self._tree(repo, self._commit(repo, tail[1]), "/".join(tail[2:]).strip("/"))
        if tail[:1] == ["paths-info"] and len(tail) >= 2 and method == "POST":
            return self._paths_info(repo, self._commit(repo, "/".join(tail[1:])))
        raise not_found()

    def _auth_check(self, repo_id: str, write: bool) -> None:
        mode = self.hub.settings.auth_check
        if mode == "missing":
            raise not_found()
        if mode == "repo_not_found":
            raise repo_not_found()
        user = self.user()
        repo = self._repo(repo_id)
        if write:
            namespace = repo_id.split("/")[0]
            if user is None or user.role == "read" or namespace not in (user.name, *user.orgs):
                raise Refusal(403, {"X-Error-Message": f"You don't have write access to model {repo_id}."})
        self._require_read(repo, user)
        self.send_json(200, {"ok": True})

    def _info(self, repo: Repo, sha: str) -> None:
        blobs = self.query.get("blobs", ["false"])[-1].lower() in ("true", "1")
        siblings = []
        for f in sorted(repo.commits[sha].values(), key=lambda f: f.path):
            s: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                size = f.size + self.hub.settings.listed_size_delta.get(f.path, 0)  # a listing that lies
                s.update(size=size, blobId=f.tree_oid)
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": size, "pointerSize": len(f.pointer)}
            siblings.append(s)
        doc: dict[str, Any] = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "createdAt": "2025-06-01T00:00:00.000Z",
            "private": False,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": ["license:cc-by-nc-sa-4.0"],
            "library_name": None,
            "siblings": siblings,
            "spaces": [],
        }
        if blobs:
            doc["usedStorage"] = sum(f.size for f in repo.commits[sha].values())
        if "securityStatus" in self.query:
            doc["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        self.send_json(200, doc)

    def _entries(self, repo: Repo, sha: str, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        """Tree entries under `prefix` (a folder; "" for the root), folders first-seen, sorted by path."""
        files = repo.commits[sha]
        base = f"{prefix}/" if prefix else ""
        out: dict[str, dict[str, Any]] = {}
        for p, f in files.items():
            if not p.startswith(base):
                continue
            rest = p[len(base):]
            if "/" in rest:
                parts = rest.split("/")
                for depth in range(1, len(parts) if recursive else 2):
                    folder = base + "/".join(parts[:depth])
                    oid = hashlib.sha1(f"tree {sha} {folder}".encode()).hexdigest()
                    out.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
                if not recursive:
                    continue
            out[p] = _file_entry(f)
        return [out[k] for k in sorted(out)]

    def _tree(self, repo: Repo, sha: str, prefix: str) -> None:
        if prefix and prefix in repo.commits[sha]:
            raise Refusal(400, {"X-Error-Message": f"{prefix} is a file, not a directory"})
        recursive = self.query.get("recursive", ["false"])[-1].lower() in ("true", "1")
        entries = self._entries(repo, sha, prefix, recursive)
        if prefix and not entries:
            raise Refusal(404, {"X-Error-Code": "EntryNotFound",
                                 "X-Error-Message": f"{prefix} does not exist on \"{sha}\""})
        page = self.hub.settings.tree_page_size
        headers: dict[str, str] = {}
        if page:
            start = int(self.query.get("cursor", ["0"])[-1] or 0)
            if start + page < len(entries):
                query = {k: v[-1] for k, v in self.query.items() if k != "cursor"}
                query["cursor"] = str(start + page)
                host = self.headers.get("host") or urlsplit(self.hub.url).netloc
                path = urlsplit(self.path).path
                headers["Link"] = f'<http://{host}{path}?{urlencode(query)}>; rel="next"'
            entries = entries[start : start + page]
        self.send_json(200, entries, headers)

    def _paths_info(self, repo: Repo, sha: str) -> None:
        ctype = (self.headers.get("content-type") or "").lower()
        if ctype.startswith("application/json"):
            paths = list(json.loads(self.body_in or b"{}").get("paths") or [])
        else:
            paths = parse_qs(self.body_in.decode(), keep_blank_values=True).get("paths", [])
        files = repo.commits[sha]
        out: list[dict[str, Any]] = []
        for p in dict.fromkeys(x.strip("/") for x in paths):
            if p in files:
                out.append(_file_entry(files[p]))
            elif p and any(q.startswith(p + "/") for q in files):
                oid = hashlib.sha1(f"tree {sha} {p}".encode()).hexdigest()
                out.append({"type": "directory", "oid": oid, "size": 0, "path": p})
        self.send_json(200, out)



def _file_entry(f: FileSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": f.tree_oid, "size": f.size, "path": f.path}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
    return entry


