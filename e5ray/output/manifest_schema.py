"""The manifest's JSON schema (shipped in the package) and the check every load runs.

Why on load: a manifest is the one file every command trusts (verify hashes what it
names, gc keeps what it names, a refresh carries its entries forward). A hand-edited,
truncated or hostile manifest must be refused before any of that, with one line that
names the entry, instead of failing later with a KeyError or acting on a path outside
the output. The path rule is checked first (its message says why a path is refused),
then the schema (`e5ray/schema/manifest.schema.json`, draft 2020-12).

jsonschema is a core dependency: Ray itself requires it, so it adds nothing to an
install, and a second, home-made validator would be one more thing to get wrong.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from e5ray.errors import ManifestInvalidError
from e5ray.store.paths import check_manifest_paths


@functools.lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    text = resources.files("e5ray").joinpath("schema/manifest.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = manifest_schema()
    Draft202012Validator.check_schema(schema)
    # The same rules with every local `$ref` replaced by its definition: resolving a
    # reference per field made up half of validating a manifest (2,000 small units: 8.2 s
    # -> 4.5 s on a loaded 2-CPU machine), which every commit and every refresh does.
    return Draft202012Validator(_inline_refs(schema, schema.get("$defs", {})))


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with each `{"$ref": "#/$defs/NAME", ...}` replaced by NAME's schema (beside
    sibling keywords, both apply: `allOf`); the schema's definitions are not recursive."""
    if isinstance(node, list):
        return [_inline_refs(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inline_refs(v, defs) for k, v in node.items() if k not in ("$ref", "$defs")}
    ref = node.get("$ref")
    if ref is None:
        return out
    if not (isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs):
        raise ValueError(f"manifest schema: $ref {ref!r} is not one of its definitions ({', '.join(defs)})")
    target = _inline_refs(defs[ref[8:]], defs)
    return {**out, "allOf": [target, *out.get("allOf", [])]} if out else target


def _where(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate_manifest(data: Any, name: str) -> dict[str, Any]:
    """`data` itself when it is a manifest e5ray can act on; else one-line errors naming
    the entry: UnsafePathError for a path outside the output, ManifestInvalidError for the rest."""
    if not isinstance(data, dict):
        raise ManifestInvalidError(f"{name}: a JSON {type(data).__name__}, not a manifest object")
    check_manifest_paths(data, name)
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(data))
    if error is not None:
        raise ManifestInvalidError(f"{name}: {_where(error.absolute_path)}: {error.message[:300]}")
    return data
