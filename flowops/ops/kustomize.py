"""The subset of kustomize that ``infra/k8s`` uses, in Python: :func:`build` reads a
folder's ``kustomization.yaml`` and returns its resources, built as ``kustomize build``
would. The fields it knows:

``resources``
    YAML files (one or more documents) and folders with a ``kustomization.yaml``.
``components``
    folders whose ``kustomization.yaml`` is ``kind: Component``: their resources are
    added and their patches applied to everything gathered so far.
``patches``
    ``- path: file.yaml``: strategic-merge patches, matched to a resource by kind and
    ``metadata.name``. Maps merge key by key, a ``null`` value removes a key, lists of
    maps that all have a ``name`` merge item by item (containers, env, volumes, ports),
    other lists are replaced; ``$patch: delete`` removes a whole resource or a list item.
``replicas``
    ``- name: gateway`` / ``count: 3`` on the Deployment, StatefulSet or Rollout so named.
``images``
    ``- name: flowops-gateway`` with ``newName``, ``newTag`` or ``digest``.
``labels``
    ``- pairs: {...}`` set on every resource's ``metadata.labels`` and, with
    ``includeTemplates: true``, on pod templates. Selectors are never rewritten
    (they are immutable on a Deployment), so ``includeSelectors: true`` and
    ``commonLabels`` are refused.
``namespace``
    set on every namespaced resource; a ``Namespace`` resource is renamed to it.

``kubectl kustomize`` (kustomize 5.5) builds ``infra/k8s``'s overlays to the same
resources (``tests/unit/ops/test_manifests_kustomize.py``); it crashes on a
``$patch: delete`` that shares its file with other patches, so keep those alone.

Anything else in a kustomization (generators, replacements, JSON patches) is a
:class:`~flowops.errors.ConfigError` naming the file and the field.

Its output is plain data (dicts and lists, no YAML aliases), which
:mod:`flowops.ops.manifests` orders, checks and prints.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from flowops.errors import ConfigError

__all__ = ["KUSTOMIZATION", "build", "replace_images", "strategic_merge"]

Manifest = dict[str, Any]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: 5x faster when built in

KUSTOMIZATION: Final = "kustomization.yaml"
"""The file that makes a folder a kustomization (or a component)."""
_FIELDS: Final = frozenset(
    {"apiVersion", "kind", "resources", "components", "patches", "replicas", "images"}
    | {"labels", "namespace"}
)
_SCALABLE: Final = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "Rollout"})
_CLUSTER_SCOPED: Final = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    | {"ClusterSecretStore", "PriorityClass", "StorageClass", "PersistentVolume"}
)


def build(folder: Path) -> list[Manifest]:
    """The resources of the kustomization in ``folder``, built; ConfigError names the
    file and the field when something is wrong or not supported."""
    return _build(folder, component=False)


# --- one kustomization ------------------------------------------------------------


def _build(folder: Path, *, component: bool) -> list[Manifest]:
    spec = _read_kustomization(folder, component=component)
    manifests: list[Manifest] = []
    for entry in _strings(spec, "resources", folder):
        manifests.extend(_resource(folder / entry, folder))
    _check_unique(manifests, folder)
    for entry in _strings(spec, "components", folder):
        manifests = _apply_component(manifests, folder / entry)
    return _transform(manifests, spec, folder)


def _apply_component(manifests: list[Manifest], folder: Path) -> list[Manifest]:
    spec = _read_kustomization(folder, component=True)
    added = [
        m
        for entry in _strings(spec, "resources", folder)
        for m in _resource(folder / entry, folder)
    ]
    combined = manifests + added
    _check_unique(combined, folder)
    return _transform(combined, spec, folder)


def _transform(manifests: list[Manifest], spec: Mapping[str, Any], folder: Path) -> list[Manifest]:
    where = str(folder / KUSTOMIZATION)
    for entry in _list(spec, "patches", where):
        manifests = _apply_patch_entry(manifests, entry, folder)
    for entry in _list(spec, "replicas", where):
        _set_replicas(manifests, entry, where)
    for entry in _list(spec, "images", where):
        replace_images(manifests, _image_entry(entry, where))
    for entry in _list(spec, "labels", where):
        _set_labels(manifests, entry, where)
    if "namespace" in spec:
        _set_namespace(manifests, spec["namespace"], where)
    return manifests


def _read_kustomization(folder: Path, *, component: bool) -> Mapping[str, Any]:
    path = folder / KUSTOMIZATION
    documents = _load(path)
    if len(documents) != 1:
        raise ConfigError(str(path), "expected one YAML document")
    spec = documents[0]
    if "commonLabels" in spec:
        raise ConfigError(str(path), "commonLabels rewrites selectors; use labels: - pairs: {...}")
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise ConfigError(
            str(path), f"unsupported field {unknown[0]!r} (supported: {', '.join(sorted(_FIELDS))})"
        )
    kind = spec.get("kind", "Kustomization")
    expected = "Component" if component else "Kustomization"
    if kind != expected:
        how = "components:" if kind == "Component" else "resources:"
        raise ConfigError(
            str(path), f"kind {kind!r} where a {expected} was expected (list it under {how})"
        )
    return spec


def _resource(path: Path, folder: Path) -> list[Manifest]:
    if path.is_dir():
        return _build(path, component=False)
    if not path.is_file():
        raise ConfigError(str(folder / KUSTOMIZATION), f"resource {path.name!r} not found ({path})")
    manifests = _load(path)
    for manifest in manifests:
        _check_manifest(manifest, path)
    return manifests


def _load(path: Path) -> list[Manifest]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        documents = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    for document in documents:
        if not isinstance(document, dict):
            raise ConfigError(str(path), "each YAML document must be a mapping")
    return [_unshared(document) for document in documents]


def _unshared(value: Any) -> Any:
    """``value`` rebuilt so that no two places share an object (YAML aliases do)."""
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def _check_manifest(manifest: Manifest, path: Path) -> None:
    for field in ("apiVersion", "kind"):
        if not isinstance(manifest.get(field), str):
            raise ConfigError(str(path), f"a resource without {field}")
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise ConfigError(str(path), f"a {manifest['kind']} without metadata.name")


def _check_unique(manifests: list[Manifest], folder: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for manifest in manifests:
        metadata = manifest["metadata"]
        key = (manifest["kind"], metadata.get("namespace", ""), metadata["name"])
        if key in seen:
            raise ConfigError(str(folder / KUSTOMIZATION), f"{key[0]}/{key[2]} defined twice")
        seen.add(key)


def _list(spec: Mapping[str, Any], field: str, where: str) -> list[Any]:
    value = spec.get(field) or []
    if not isinstance(value, list):
        raise ConfigError(where, f"{field}: expected a list")
    return value


def _strings(spec: Mapping[str, Any], field: str, folder: Path) -> list[str]:
    where = str(folder / KUSTOMIZATION)
    values = _list(spec, field, where)
    if not all(isinstance(v, str) for v in values):
        raise ConfigError(where, f"{field}: expected a list of paths")
    return values


# --- patches --------------------------------------------------------------------------


def _apply_patch_entry(manifests: list[Manifest], entry: Any, folder: Path) -> list[Manifest]:
    where = str(folder / KUSTOMIZATION)
    if not isinstance(entry, dict) or set(entry) != {"path"}:
        raise ConfigError(where, f"patches: only '- path: file.yaml' is supported, got {entry!r}")
    path = folder / str(entry["path"])
    for patch in _load(path):
        manifests = _apply_patch(manifests, patch, path)
    return manifests


def _apply_patch(manifests: list[Manifest], patch: Manifest, path: Path) -> list[Manifest]:
    kind = patch.get("kind")
    name = (patch.get("metadata") or {}).get("name")
    targets = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    if len(targets) != 1:
        raise ConfigError(str(path), f"patch target {kind}/{name} not found")
    target = targets[0]
    if patch.get("$patch") == "delete":
        return [m for m in manifests if m is not target]
    merged = strategic_merge(target, patch)
    return [merged if m is target else m for m in manifests]


def strategic_merge(target: Any, patch: Any) -> Any:
    """``target`` with strategic-merge ``patch`` applied (a new value; neither is changed).

    >>> strategic_merge({"a": 1, "b": {"c": 2}}, {"b": {"d": 3}, "a": None})
    {'b': {'c': 2, 'd': 3}}
    >>> strategic_merge([{"name": "x", "image": "a"}, {"name": "y"}], [{"name": "x", "image": "b"}])
    [{'name': 'x', 'image': 'b'}, {'name': 'y'}]
    >>> strategic_merge([{"name": "x"}, {"name": "y"}], [{"name": "x", "$patch": "delete"}])
    [{'name': 'y'}]
    """
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(target)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key != "$patch":
                merged[key] = (
                    strategic_merge(target[key], value) if key in target else _plain(value)
                )
        return merged
    if isinstance(target, list) and isinstance(patch, list) and _named(target) and _named(patch):
        return _merge_named(target, patch)
    return _plain(patch)


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def _merge_named(target: list[Any], patch: list[Any]) -> list[Any]:
    """Items of ``patch`` merged into ``target`` by name, in kubectl's order: the patch's
    items first, in its order, then the items only ``target`` has.

    >>> _merge_named([{"name": "a"}, {"name": "c"}], [{"name": "b"}, {"name": "a", "v": 1}])
    [{'name': 'b'}, {'name': 'a', 'v': 1}, {'name': 'c'}]
    """
    old = {item["name"]: item for item in target}
    patched = {item["name"] for item in patch}
    first = [
        strategic_merge(old[item["name"]], item) if item["name"] in old else _plain(item)
        for item in patch
        if item.get("$patch") != "delete"
    ]
    rest = [copy.deepcopy(item) for item in target if item["name"] not in patched]
    return first + rest


def _plain(value: Any) -> Any:
    """``value`` without ``$patch`` directives, copied."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "$patch"}
    if isinstance(value, list):
        return [
            _plain(v) for v in value if not (isinstance(v, dict) and v.get("$patch") == "delete")
        ]
    return value


# --- replicas, images, labels, namespace -----------------------------------------------


def _set_replicas(manifests: list[Manifest], entry: Any, where: str) -> None:
    if not (
        isinstance(entry, dict)
        and set(entry) == {"name", "count"}
        and isinstance(entry["count"], int)
    ):
        raise ConfigError(
            where, f"replicas: expected '- name: N' and 'count: <int>', got {entry!r}"
        )
    targets = [
        m for m in manifests if m["kind"] in _SCALABLE and m["metadata"]["name"] == entry["name"]
    ]
    if not targets:
        raise ConfigError(
            where, f"replicas: no Deployment, StatefulSet or Rollout {entry['name']!r}"
        )
    for manifest in targets:
        manifest.setdefault("spec", {})["replicas"] = entry["count"]


def _image_entry(entry: Any, where: str) -> dict[str, str]:
    allowed = {"name", "newName", "newTag", "digest"}
    if not (isinstance(entry, dict) and "name" in entry and set(entry) <= allowed):
        raise ConfigError(
            where, f"images: expected name with newName, newTag or digest, got {entry!r}"
        )
    name = str(entry["name"])
    reference = str(entry.get("newName", name))
    if "digest" in entry:
        reference += f"@{entry['digest']}"
    elif "newTag" in entry:
        reference += f":{entry['newTag']}"
    return {name: reference}


def replace_images(
    manifests: list[Manifest], images: Mapping[str, str], *, loose: bool = False
) -> set[str]:
    """Set the image of each container whose image name (no tag or digest) is a key of
    ``images``; ``loose`` matches the name's last part too (``flowops-gateway`` finds
    ``registry.example.com/flowops/flowops-gateway``). Answers the keys that matched.

    >>> pod = {"spec": {"template": {"spec": {"containers": [{"image": "r.io/a/web:1"}]}}}}
    >>> replace_images([pod], {"web": "r.io/a/web:2"}, loose=True), pod["spec"]["template"]
    ({'web'}, {'spec': {'containers': [{'image': 'r.io/a/web:2'}]}})
    """
    used: set[str] = set()
    for container in _containers(manifests):
        name = _strip_tag(str(container.get("image", "")))
        candidates = (name, name.rpartition("/")[2]) if loose else (name,)
        key = next((c for c in candidates if c in images), None)
        if key is not None:
            container["image"] = images[key]
            used.add(key)
    return used


def _strip_tag(image: str) -> str:
    """The image's name without tag or digest.

    >>> _strip_tag("registry:5000/flowops-gateway:0.4.0"), _strip_tag("a/b@sha256:00")
    ('registry:5000/flowops-gateway', 'a/b')
    """
    name = image.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


def _containers(manifests: list[Manifest]) -> Iterable[dict[str, Any]]:
    for template in _pod_templates(manifests):
        spec = template.get("spec") or {}
        yield from spec.get("initContainers") or []
        yield from spec.get("containers") or []


def _pod_templates(manifests: list[Manifest]) -> Iterable[dict[str, Any]]:
    for manifest in manifests:
        template = (manifest.get("spec") or {}).get("template")
        if isinstance(template, dict):
            yield template


def _set_labels(manifests: list[Manifest], entry: Any, where: str) -> None:
    allowed = {"pairs", "includeSelectors", "includeTemplates"}
    if not (
        isinstance(entry, dict) and isinstance(entry.get("pairs"), dict) and set(entry) <= allowed
    ):
        raise ConfigError(where, f"labels: expected '- pairs: {{...}}', got {entry!r}")
    if entry.get("includeSelectors"):
        raise ConfigError(
            where, "labels: includeSelectors is not supported (selectors are immutable)"
        )
    pairs = {str(k): str(v) for k, v in entry["pairs"].items()}
    for manifest in manifests:
        manifest["metadata"].setdefault("labels", {}).update(pairs)
    if entry.get("includeTemplates"):
        for template in _pod_templates(manifests):
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _set_namespace(manifests: list[Manifest], namespace: Any, where: str) -> None:
    if not isinstance(namespace, str) or not namespace:
        raise ConfigError(where, f"namespace: expected a name, got {namespace!r}")
    for manifest in manifests:
        if manifest["kind"] == "Namespace":
            manifest["metadata"]["name"] = namespace
        elif manifest["kind"] not in _CLUSTER_SCOPED:
            manifest["metadata"]["namespace"] = namespace
