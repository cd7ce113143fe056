"""The local hub plus the Jobs API (`hf jobs run`, job info, logs), which only `--hf-job`'s tests call:
submissions are recorded in `jobs` (namespace, parsed body, Authorization header), job info says done,
logs are two lines. The product's own local hub (`gatedfetch.localhub`, what `--demo` runs) has no Jobs API."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from gatedfetch.localhub import LocalHub, User, World
from gatedfetch.localhub.handler import Refusal, invalid_credentials, not_found
from gatedfetch.localhub.routes import Routes


class TestHub(LocalHub):
    """The hub the tests start: `LocalHub` with /api/jobs/… answered."""

    __test__ = False  # not a pytest class

    def __init__(self, world: World | None = None, *, port: int = 0, cdn_port: int = 0) -> None:
        super().__init__(world, port=port, cdn_port=cdn_port)
        self.jobs: list[dict[str, Any]] = []  # {"namespace", "body" (the parsed JSON), "authorization"}
        self._job_docs: dict[str, dict[str, Any]] = {}
        self.extra_routes["api/jobs"] = self._jobs

    def _jobs(self, handler: Routes, method: str, rest: list[str]) -> None:
        # POST {ns} (run) | GET {ns} (list) | GET {ns}/{id} | GET {ns}/{id}/logs | POST {ns}/{id}/cancel
        user = handler.user()
        if user is None:
            raise invalid_credentials()
        if not rest or not rest[0]:
            raise not_found()
        namespace = rest[0]
        if namespace not in (user.name, *user.orgs):
            raise Refusal(403, {"X-Error-Message": f"You cannot use jobs in the namespace {namespace}"})
        docs = self._job_docs
        if len(rest) == 1 and method == "POST":
            try:
                body = json.loads(handler.body_in or b"{}")
            except ValueError as e:
                raise Refusal(400, {}, f"bad JSON: {e}") from e
            if not isinstance(body, dict) or not (body.get("dockerImage") or body.get("spaceId")):
                raise Refusal(400, {}, "dockerImage or spaceId is required")
            job_id = os.urandom(12).hex()
            with self.lock:
                self.jobs.append(
                    {"namespace": namespace, "body": body, "authorization": handler.headers.get("authorization", "")}
                )
                docs[job_id] = _job_doc(job_id, namespace, user, body)
            return handler.send_json(200, docs[job_id])
        if len(rest) == 1 and method == "GET":
            return handler.send_json(200, [_finished(d) for d in docs.values() if d["owner"]["name"] == namespace])
        doc = docs.get(rest[1])
        if doc is None or doc["owner"]["name"] != namespace:
            raise Refusal(404, {"X-Error-Message": "Job not found"})
        if len(rest) == 2 and method == "GET":
            return handler.send_json(200, _finished(doc))
        if rest[2:] == ["cancel"] and method == "POST":
            doc["status"] = {"stage": "CANCELED", "message": None}
            return handler.send_json(200, doc)
        if rest[2:] == ["logs"] and method == "GET":
            now = datetime.now(timezone.utc) - timedelta(seconds=2)
            lines = [f"===== Job started at {now.isoformat()} =====", "hello from the test hub"]
            body = b"".join(
                b"data: " + json.dumps({"data": line, "timestamp": now.isoformat().replace("+00:00", "Z")}).encode()
                + b"\n\n"
                for line in lines
            )
            return handler.send_bytes(200, body, {"Cache-Control": "no-cache"}, "text/event-stream")
        raise not_found()



def _job_doc(job_id: str, namespace: str, user: User, body: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {
        "id": job_id,
        "createdAt": now,
        "dockerImage": body.get("dockerImage"),
        "spaceId": body.get("spaceId"),
        "command": body.get("command", []),
        "arguments": body.get("arguments", []),
        "environment": body.get("environment", {}),
        # values are never echoed: the Hub keeps secrets encrypted
        "secrets": {k: "[encrypted]" for k in (body.get("secrets") or {})},
        "flavor": body.get("flavor", "cpu-basic"),
        "labels": body.get("labels"),
        "status": {"stage": "RUNNING", "message": None},
        "owner": {"id": hashlib.md5(namespace.encode()).hexdigest()[:24], "name": namespace,
                  "type": "user" if namespace == user.name else "org"},
        "initiator": {"type": "user", "id": hashlib.md5(user.name.encode()).hexdigest()[:24], "name": user.name},
    }


def _finished(doc: dict[str, Any]) -> dict[str, Any]:
    """A job looked at after its submission: done (logs are short)."""
    if doc["status"]["stage"] == "RUNNING":
        return dict(doc, status={"stage": "COMPLETED", "message": None})
    return doc

