"""The Kubernetes API calls ``flowops deploy`` makes, behind one small protocol.

:class:`ClusterClient` is what the deploy logic needs from a cluster: API discovery (is
this kind served, under which plural, namespaced or not), server-side apply, get, list
and a JSON patch. :class:`KubeCluster` makes those calls through kubernetes-asyncio's
``ApiClient`` (the kubeconfig's server, TLS and credentials); ``flowops.ops.fake_cluster``
holds the in-memory version unit tests use.

Every failure is a :class:`~flowops.errors.ClusterError` in one line: no answer (exit 3),
or a refusal naming the verb and the object (401, 403, 404, 422: exit 2).

>>> ResourceType("apps/v1", "Deployment", "deployments", True).path("web", "gateway")
'/apis/apps/v1/namespaces/web/deployments/gateway'
>>> ResourceType("v1", "Namespace", "namespaces", False).path(None, "web")
'/api/v1/namespaces/web'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flowops.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

__all__ = [
    "APPLY_CONTENT_TYPE",
    "JSON_PATCH_CONTENT_TYPE",
    "ClusterClient",
    "KubeCluster",
    "ResourceType",
    "connect",
    "kubeconfig_path",
]

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
"""Server-side apply: a PATCH whose body is the whole object as its manager wants it."""

JSON_PATCH_CONTENT_TYPE = "application/json-patch+json"
"""RFC 6902 JSON patch: what ``kubectl rollout undo`` sends."""

Obj = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    """A kind as API discovery describes it: where its objects live."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        """The API group (``apps``; ``""`` for the core group)."""
        return self.api_version.rpartition("/")[0]

    @property
    def resource(self) -> str:
        """``plural.group`` as RBAC and error messages name it (``deployments.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """The URL path of the collection, or of the object ``name``."""
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        scope = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{root}{scope}/{self.plural}" + (f"/{name}" if name else "")

    def describe(self, namespace: str | None, name: str | None = None) -> str:
        """``Deployment flowops-dev/gateway`` for messages."""
        where = "/".join(part for part in (namespace if self.namespaced else None, name) if part)
        return f"{self.kind} {where}" if where else self.resource


class ClusterClient(Protocol):
    """The calls ``flowops deploy`` makes; each raises ClusterError when refused."""

    @property
    def server(self) -> str:
        """The API server's URL, for messages."""
        ...

    async def version(self) -> Obj:
        """``GET /version``: proves the server answers."""
        ...

    async def resource_type(self, api_version: str, kind: str) -> ResourceType | None:
        """Discovery: the kind's resource, or None when the server does not serve it
        (a CRD that is not installed)."""
        ...

    async def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        """The object, or None when there is none."""
        ...

    async def list_objects(
        self, rtype: ResourceType, namespace: str | None, selector: str
    ) -> list[Obj]:
        """Objects matching a label selector (``app=web,tier=front``)."""
        ...

    async def apply(
        self, rtype: ResourceType, manifest: Mapping[str, Any], *, manager: str, dry_run: bool
    ) -> Obj:
        """Server-side apply of ``manifest`` (force: conflicts go to ``manager``)."""
        ...

    async def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        manager: str,
    ) -> Obj:
        """An RFC 6902 JSON patch of the object."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def kubeconfig_path(explicit: Path | None) -> str | None:
    """Which kubeconfig to read: ``explicit`` (it must exist), else ``$KUBECONFIG`` (its
    files that exist, ``:``-separated), else ``~/.kube/config``; None when there is none."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError("deploy.kubeconfig", f"no kubeconfig file at {explicit}")
        return str(explicit)
    listed = os.environ.get("KUBECONFIG")
    if listed:
        found = [p for p in listed.split(os.pathsep) if p and Path(p).expanduser().is_file()]
        return os.pathsep.join(found) or None
    home = Path.home() / ".kube" / "config"
    return str(home) if home.is_file() else None


async def connect(config_file: str, context: str | None, *, request_timeout: float) -> KubeCluster:
    """A client for the cluster of ``context`` (default: the current one) in ``config_file``.

    Raises ConfigError for a kubeconfig that cannot be used or a context it lacks.
    """
    from flowops.extras import require_extra

    require_extra("deploy", "kubernetes_asyncio")
    from kubernetes_asyncio.client import ApiClient, Configuration
    from kubernetes_asyncio.config import ConfigException, list_kube_config_contexts
    from kubernetes_asyncio.config import load_kube_config as _load

    _check_kubeconfig_files(config_file)
    try:
        contexts, current = list_kube_config_contexts(config_file)
    except (ConfigException, OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError("deploy.kubeconfig", f"{config_file}: {_first_line(exc)}") from None
    names = [str(c.get("name")) for c in contexts or []]
    if context is not None and context not in names:
        there = ", ".join(names) or "none"
        raise ConfigError("deploy.context", f"no context {context!r} in {config_file} ({there})")
    if context is None and current is None:
        raise ConfigError("deploy.context", f"{config_file} sets no current-context; give one")
    configuration = Configuration()
    try:
        await _load(config_file, context, configuration, persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        raise ConfigError("deploy.kubeconfig", f"{config_file}: {_first_line(exc)}") from None
    api = ApiClient(configuration)
    return KubeCluster(api, str(configuration.host), request_timeout=request_timeout)


def _check_kubeconfig_files(config_file: str) -> None:
    """Each file of ``config_file`` (``:``-separated) is YAML holding a mapping."""
    import yaml

    for path in config_file.split(os.pathsep):
        try:
            data = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError("deploy.kubeconfig", f"{path}: {_first_line(exc)}") from None
        if not isinstance(data, dict):
            why = "not a kubeconfig (expected clusters, contexts and users)"
            raise ConfigError("deploy.kubeconfig", f"{path}: {why}")


class KubeCluster:
    """:class:`ClusterClient` over kubernetes-asyncio's ApiClient (aiohttp)."""

    def __init__(self, api: ApiClient, server: str, *, request_timeout: float = 10.0) -> None:
        self._api = api
        self._server = server
        self._timeout = request_timeout
        self._discovered: dict[str, dict[str, ResourceType] | None] = {}

    @property
    def server(self) -> str:
        return self._server

    async def version(self) -> Obj:
        return (await self._call("GET", "/version", verb="get", what="/version"))[1]

    async def resource_type(self, api_version: str, kind: str) -> ResourceType | None:
        if api_version not in self._discovered:
            self._discovered[api_version] = await self._discover(api_version)
        served = self._discovered[api_version]
        return None if served is None else served.get(kind)

    async def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        what = rtype.describe(namespace, name)
        status, body = await self._call(
            "GET", rtype.path(namespace, name), verb="get", what=what, missing_ok=True
        )
        return None if status == 404 else body

    async def list_objects(
        self, rtype: ResourceType, namespace: str | None, selector: str
    ) -> list[Obj]:
        what = f"{rtype.resource} in namespace {namespace}"
        _, body = await self._call(
            "GET",
            rtype.path(namespace),
            query=[("labelSelector", selector)],
            verb="list",
            what=what,
        )
        return list(body.get("items") or [])

    async def apply(
        self, rtype: ResourceType, manifest: Mapping[str, Any], *, manager: str, dry_run: bool
    ) -> Obj:
        metadata = manifest["metadata"]
        query = [("fieldManager", manager), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        _, body = await self._call(
            "PATCH",
            rtype.path(metadata.get("namespace"), metadata["name"]),
            query=query,
            body=dict(manifest),
            content_type=APPLY_CONTENT_TYPE,
            verb="patch",
            what=rtype.describe(metadata.get("namespace"), metadata["name"]),
        )
        return body

    async def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        manager: str,
    ) -> Obj:
        _, body = await self._call(
            "PATCH",
            rtype.path(namespace, name),
            query=[("fieldManager", manager)],
            body=[dict(op) for op in operations],
            content_type=JSON_PATCH_CONTENT_TYPE,
            verb="patch",
            what=rtype.describe(namespace, name),
        )
        return body

    async def close(self) -> None:
        await self._api.close()

    async def _discover(self, api_version: str) -> dict[str, ResourceType] | None:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        status, body = await self._call(
            "GET", path, verb="get", what=f"API discovery of {api_version}", missing_ok=True
        )
        if status == 404:
            return None
        return {
            r["kind"]: ResourceType(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
            for r in body.get("resources") or []
            if "/" not in r["name"]
        }

    async def _call(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        what: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
    ) -> tuple[int, Obj]:
        import aiohttp

        try:
            response = await self._api.call_api(
                path,
                method,
                query_params=list(query),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            async with response:
                status, raw = response.status, await response.read()
        except aiohttp.ClientConnectorError as exc:
            error = exc.os_error
            why = os.strerror(error.errno) if error.errno else error.strerror or str(error)
            raise ClusterError(self._server, f"cannot connect: {why}") from None
        except TimeoutError:
            raise ClusterError(self._server, f"no answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise ClusterError(self._server, f"{verb} {what}: {_first_line(exc)}") from None
        answer = _json(raw)
        if status == 404 and missing_ok:
            return status, answer
        if status >= 400:
            raise ClusterError(self._server, _refusal(status, answer, verb, what), status=status)
        return status, answer


def _refusal(status: int, answer: Obj, verb: str, what: str) -> str:
    """One line for a refused request, with the server's own message.

    >>> _refusal(403, {"message": "nope"}, "patch", "Deployment web/gw")
    'forbidden: may not patch Deployment web/gw: nope'
    """
    message = str(answer.get("message") or answer.get("reason") or "no message").strip()
    if status == 401:
        return "401 Unauthorized: the API server did not accept the kubeconfig's credentials"
    if status == 403:
        return f"forbidden: may not {verb} {what}: {message}"
    if status == 422:
        return f"invalid {what}: {message}"
    return f"{verb} {what}: HTTP {status}: {message}"


def _json(raw: bytes) -> Obj:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": raw.decode("utf-8", "replace")[:200]}
    return value if isinstance(value, dict) else {"items": value}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
