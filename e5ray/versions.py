"""Manifest versions under an output root, and the commit that adds one.

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

from e5ray.errors import ConcurrentCommitError, ManifestInvalidError
from e5ray.manifest import Manifest, RunInfo, ShardEntry
from e5ray.manifest_schema import validate_manifest
from e5ray.space import EmbeddingSpace
from e5ray.storage import OutputDir

MANIFEST = "manifest.json"
VERSIONS_DIR = "manifests"
_VERSION_RE = re.compile(r"v(\d{6,})\.json$")


def version_name(number: int) -> str:
    return f"{VERSIONS_DIR}/v{number:06d}.json"


def list_versions(output: OutputDir) -> list[int]:
    if not output.exists(VERSIONS_DIR):
        return []
    numbers = []
    for path in output.fs.ls(output.path(VERSIONS_DIR), detail=False):
        match = _VERSION_RE.search(path)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def read_json(output: OutputDir, rel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(output.read_bytes(rel))
    return data


def read_manifest(output: OutputDir, rel: str = MANIFEST) -> Manifest:
    """A manifest file, checked against the schema and the path rule (e5ray.manifest_schema)."""
    try:
        data = read_json(output, rel)
    except UnicodeDecodeError as exc:
        raise ManifestInvalidError(f"{rel}: not UTF-8 JSON ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ManifestInvalidError(f"{rel}: not JSON ({exc})") from None
    return Manifest.from_dict(validate_manifest(data, rel))


def load_latest(output: OutputDir, versions: list[int] | None = None) -> Manifest | None:
    """The newest committed manifest version, or None for an output never committed to.
    `versions`: the output's version numbers when the caller has listed them already."""
    if versions is None:
        versions = list_versions(output)
    if versions:
        return read_manifest(output, version_name(versions[-1]))
    if output.exists(MANIFEST):  # written by hand or by an older layout
        return read_manifest(output, MANIFEST)
    return None


def next_manifest(
    previous: Manifest | None,
    versions: list[int],
    space: EmbeddingSpace,
    input: dict[str, Any],
    shards: list[ShardEntry],
    changes: dict[str, Any],
    output_format: str,
    run: RunInfo,
) -> Manifest:
    """The version after the newest one (`versions`: the numbers listed at the run's start;
    `previous`: that version, or a hand-written manifest.json), holding `shards` in source order,
    and each source's units in file order."""
    number = (versions[-1] if versions else (previous.version if previous else 0)) + 1
    return Manifest(
        version=number,
        previous=version_name(previous.version) if previous else None,
        space=space,
        input=input,
        shards=tuple(sorted(shards, key=lambda e: (e.source.uri, e.unit.start if e.unit else 0))),
        changes=changes,
        output_format=output_format,
        run=run,
    )


def commit(output: OutputDir, manifest: Manifest) -> str:
    """Write `manifest` as version `manifest.version` (create-only), then publish it."""
    name = version_name(manifest.version)
    data = validate_manifest(manifest.to_dict(), name)  # never write what the next load would refuse
    blob = json.dumps(data, indent=1, ensure_ascii=False).encode()
    try:
        output.write_create_only(name, blob)
    except FileExistsError:
        raise ConcurrentCommitError(
            f"{output.uri}/{name} was committed by another run while this one worked; "
            "nothing of this run is referenced (its files are left for `e5ray gc`). Run again to refresh."
        ) from None
    # Publish only if no later version was committed meanwhile, so manifest.json never
    # moves backwards (a later run republishes the newest version in any case).
    if list_versions(output)[-1] == manifest.version:
        output.write_atomic(MANIFEST, blob)
    return name
