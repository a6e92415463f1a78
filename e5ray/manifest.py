"""The manifest: what an output holds, how it was made, and its versions.

Layout under the output root:
- `manifests/v000001.json`, `v000002.json`, ...: immutable versions, each written
  create-only, so two concurrent runs cannot both commit the same version;
- `manifest.json`: a copy of the newest version, replaced atomically; the file readers use.

The newest version is the highest number in `manifests/` (a run killed between its two
writes leaves `manifest.json` one version behind; the next run publishes it again).
"""

from __future__ import annotations

import json
import re
from typing import Any

from e5ray.manifest_schema import ManifestInvalidError, validate_manifest
from e5ray.space import EmbeddingSpace
from e5ray.storage import filesystem_for, join, write_atomic, write_create_only

MANIFEST = "manifest.json"
VERSIONS_DIR = "manifests"
FORMAT = "e5ray.manifest/1"
_VERSION_RE = re.compile(r"v(\d{6,})\.json$")


class ConcurrentCommitError(RuntimeError):
    """Another run committed this version first."""


class SpaceMismatchError(ValueError):
    """The output holds vectors of another embedding space."""


def version_name(number: int) -> str:
    return f"{VERSIONS_DIR}/v{number:06d}.json"


def list_versions(output_uri: str, storage_options: dict[str, Any] | None = None) -> list[int]:
    fs, root = filesystem_for(output_uri, storage_options)
    directory = join(root, VERSIONS_DIR)
    if not fs.exists(directory):
        return []
    numbers = []
    for path in fs.ls(directory, detail=False):
        match = _VERSION_RE.search(path)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def read_json(output_uri: str, relpath: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    fs, root = filesystem_for(output_uri, storage_options)
    with fs.open(join(root, relpath), "rb") as fh:
        return json.loads(fh.read())


def read_manifest(output_uri: str, relpath: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A manifest file, checked against the schema and the path rule (e5ray.manifest_schema)."""
    try:
        data = read_json(output_uri, relpath, storage_options)
    except UnicodeDecodeError as exc:
        raise ManifestInvalidError(f"{relpath}: not UTF-8 JSON ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ManifestInvalidError(f"{relpath}: not JSON ({exc})") from None
    return validate_manifest(data, relpath)


def load_latest(
    output_uri: str, storage_options: dict[str, Any] | None = None, versions: list[int] | None = None
) -> dict[str, Any] | None:
    """The newest committed manifest version, or None for an output never committed to.
    `versions`: the output's version numbers when the caller has listed them already."""
    if versions is None:
        versions = list_versions(output_uri, storage_options)
    if versions:
        return read_manifest(output_uri, version_name(versions[-1]), storage_options)
    fs, root = filesystem_for(output_uri, storage_options)
    if fs.exists(join(root, MANIFEST)):  # written by hand or by an older layout
        return read_manifest(output_uri, MANIFEST, storage_options)
    return None


def check_space(previous: dict[str, Any] | None, space: EmbeddingSpace, full: bool) -> None:
    """Refuse to add vectors of `space` to an output holding another space (unless `full`)."""
    if previous is None or full:
        return
    old = EmbeddingSpace.from_dict(previous["space"])
    diff = old.differences(space)
    if diff:
        details = "; ".join(f"{k}: {a!r} in the output, {b!r} now" for k, a, b in ((k, *v) for k, v in diff.items()))
        raise SpaceMismatchError(
            f"refusing to mix embedding spaces in one output ({details}). Re-embed everything into "
            "the new space as a new version with --full, or write to another output."
        )


def totals(shards: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "shards": len(shards),
        "input_rows": sum(s["input_rows"] for s in shards),
        "embedded": sum(s["rows"] for s in shards),
        "rejected": sum(s["rejected"] for s in shards),
        "duplicates": sum(s.get("duplicates", 0) for s in shards),
        "truncated": sum(s["truncated"] for s in shards),
        "tokens": sum(s["tokens"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
    }


def commit(output_uri: str, manifest: dict[str, Any], storage_options: dict[str, Any] | None = None) -> str:
    """Write `manifest` as version `manifest['version']` (create-only), then publish it."""
    fs, root = filesystem_for(output_uri, storage_options)
    name = version_name(manifest["version"])
    validate_manifest(manifest, name)  # never write what the next load would refuse
    blob = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
    try:
        write_create_only(fs, join(root, name), blob)
    except FileExistsError:
        raise ConcurrentCommitError(
            f"{output_uri}/{name} was committed by another run while this one worked; "
            "nothing of this run is referenced (its files are left for `e5ray gc`). Run again to refresh."
        ) from None
    # Publish only if no later version was committed meanwhile, so manifest.json never
    # moves backwards (a later run republishes the newest version in any case).
    if list_versions(output_uri, storage_options)[-1] == manifest["version"]:
        write_atomic(fs, join(root, MANIFEST), blob)
    return name
