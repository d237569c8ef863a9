"""A Kubernetes API server in the test process, for the calls ``flowops deploy`` makes.

No Kubernetes cluster can run on the build machines, so the deploy command's API
conversation is tested against this: an aiohttp server on 127.0.0.1 (a free port) that
speaks the wire format of the real one (JSON bodies, ``Status`` objects for errors,
discovery documents) over a :class:`flowops.ops.fake_cluster.FakeCluster`, which keeps
the objects and plays the controllers' part (generations, ReplicaSet revisions).

Calls it answers:
  GET   /version, /api, /apis                     version, APIVersions, APIGroupList
  GET   /api/v1, /apis/<group>/<version>          APIResourceList (404: group not served)
  GET   <collection>/<name>                       one object (404 Status when missing)
  GET   <collection>?labelSelector=a=b,c=d        a list (equality selectors only)
  PATCH <collection>/<name>  apply-patch+yaml     server-side apply (fieldManager required,
                                                  force, dryRun=All)
  PATCH <collection>/<name>  json-patch+json      RFC 6902 add/replace/remove
Everything else is a 405 or 404 Status. With a ``token``, a request without
``Authorization: Bearer <token>`` is a 401 Status. Every request is kept in
:attr:`KubeApiServer.requests` for tests to assert on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from flowops.broker import free_port
from flowops.errors import ClusterError
from flowops.ops.cluster import APPLY_CONTENT_TYPE, JSON_PATCH_CONTENT_TYPE, ResourceType
from flowops.ops.fake_cluster import FakeCluster


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


class KubeApiServer:
    """Serve ``cluster`` on ``http://127.0.0.1:<port>``; ``async with`` starts and stops it."""

    def __init__(self, cluster: FakeCluster | None = None, *, token: str | None = None) -> None:
        self.cluster = cluster or FakeCluster()
        self.token = token
        self.requests: list[Recorded] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> KubeApiServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def kubeconfig(self, path: Path, *, token: str | None = None, context: str = "test") -> Path:
        """Write a kubeconfig for this server (plain http) at ``path``."""
        user = {"token": token} if token else {"username": "tester"}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": user}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def applies(self, *, dry_run: bool | None = None) -> list[Recorded]:
        """The server-side apply requests received (only dry runs, or none, if asked)."""
        return [
            r
            for r in self.requests
            if r.method == "PATCH"
            and r.content_type == APPLY_CONTENT_TYPE
            and (dry_run is None or (r.query.get("dryRun") == "All") == dry_run)
        ]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = _parse(raw, request.content_type)
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), request.content_type, body)
        )
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        try:
            return await self._route(request, body)
        except ClusterError as exc:
            code = exc.status or 500
            return _status(code, exc.reason, _REASONS.get(code, "InternalError"))

    async def _route(self, request: web.Request, body: Any) -> web.Response:
        path = request.path.rstrip("/")
        if path == "/version":
            return web.json_response(await self.cluster.version())
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            return web.json_response(self._groups())
        api_version, rest = _split(path)
        if api_version is None:
            return _status(404, f"the server could not find {path}", "NotFound")
        served = [t for t in self.cluster.types.values() if t.api_version == api_version]
        if not served:
            return _status(404, f"the server could not find {path}", "NotFound")
        if not rest:
            return web.json_response(_resource_list(api_version, served))
        rtype, namespace, name = _locate(served, rest)
        if rtype is None:
            return _status(404, f"the server could not find {path}", "NotFound")
        return await self._object(request, body, rtype, namespace, name)

    async def _object(
        self,
        request: web.Request,
        body: Any,
        rtype: ResourceType,
        namespace: str | None,
        name: str | None,
    ) -> web.Response:
        if request.method == "GET" and name is None:
            selector = request.query.get("labelSelector", "")
            items = await self.cluster.list_objects(rtype, namespace, selector)
            kind = f"{rtype.kind}List"
            return web.json_response(
                {"kind": kind, "apiVersion": rtype.api_version, "items": items}
            )
        if request.method == "GET" and name is not None:
            found = await self.cluster.get(rtype, namespace, name)
            if found is None:
                return _status(404, f'{rtype.resource} "{name}" not found', "NotFound")
            return web.json_response(found)
        if request.method == "PATCH" and name is not None:
            return await self._patch(request, body, rtype, namespace, name)
        return _status(405, f"{request.method} is not supported here", "MethodNotAllowed")

    async def _patch(
        self, request: web.Request, body: Any, rtype: ResourceType, namespace: str | None, name: str
    ) -> web.Response:
        manager = request.query.get("fieldManager")
        if request.content_type == APPLY_CONTENT_TYPE:
            if not manager:
                return _status(400, "PATCH with apply requires a fieldManager", "BadRequest")
            if (body.get("metadata") or {}).get("name") != name:
                return _status(400, "the name of the object does not match the URL", "BadRequest")
            dry_run = request.query.get("dryRun") == "All"
            created = (rtype.kind, namespace or "", name) not in self.cluster.objects
            applied = await self.cluster.apply(rtype, body, manager=manager, dry_run=dry_run)
            return web.json_response(applied, status=201 if created else 200)
        if request.content_type == JSON_PATCH_CONTENT_TYPE:
            patched = await self.cluster.patch(
                rtype, namespace, name, body, manager=manager or "unknown"
            )
            return web.json_response(patched)
        return _status(
            415, f"unsupported patch type {request.content_type}", "UnsupportedMediaType"
        )

    def _groups(self) -> dict[str, Any]:
        versions: dict[str, list[str]] = {}
        for rtype in self.cluster.types.values():
            if rtype.group:
                versions.setdefault(rtype.group, [])
                version = rtype.api_version.split("/")[1]
                if version not in versions[rtype.group]:
                    versions[rtype.group].append(version)
        groups = []
        for group, names in sorted(versions.items()):
            listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in names]
            groups.append({"name": group, "versions": listed, "preferredVersion": listed[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
}


def _status(code: int, message: str, reason: str) -> web.Response:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(status, status=code)


def _parse(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type == APPLY_CONTENT_TYPE:
        return yaml.safe_load(raw)
    return json.loads(raw)


def _split(path: str) -> tuple[str | None, list[str]]:
    """``/apis/apps/v1/namespaces/x/deployments`` -> (``apps/v1``, [namespaces, x, deployments])."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        return "v1", parts[2:]
    if parts[0] == "apis" and len(parts) >= 3:
        return f"{parts[1]}/{parts[2]}", parts[3:]
    return None, []


def _locate(
    served: list[ResourceType], rest: list[str]
) -> tuple[ResourceType | None, str | None, str | None]:
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    by_plural = {t.plural: t for t in served}
    rtype = by_plural.get(rest[0])
    if rtype is None or len(rest) > 2 or (namespace is not None) != rtype.namespaced:
        return None, None, None
    return rtype, namespace, rest[1] if len(rest) == 2 else None


def _resource_list(api_version: str, served: list[ResourceType]) -> dict[str, Any]:
    resources = [
        {
            "name": t.plural,
            "singularName": t.kind.lower(),
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": ["get", "list", "patch", "create", "update", "delete"],
        }
        for t in served
    ]
    resources += [
        {"name": f"{t.plural}/status", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get"]}
        for t in served
        if t.kind in ("Deployment", "Rollout")
    ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api_version,
        "resources": resources,
    }
