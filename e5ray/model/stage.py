"""`e5ray stage-model`: put a model's files where every node of a job can read them.

    e5ray stage-model intfloat/multilingual-e5-small s3://bucket/models/e5-small
    e5ray stage-model demo /shared/models/demo --model-path .demo-model

The source is a local model directory (`--model-path`) or the catalogue download (the
same resolution a run uses, so a staged copy holds exactly what a run would load). The
destination is a local directory or an `s3://` prefix, laid out flat, as `--model-path`
expects: the .onnx file and its external-data files, tokenizer.json,
tokenizer_config.json, special_tokens_map.json, config.json, plus
- `SHA256SUMS`: one `<sha256>  <name>` line per file (`sha256sum -c SHA256SUMS` checks it);
- `e5ray-model.json`: the model name and the sha256 of its weights, as manifests record it.
Each file is written atomically and `SHA256SUMS` last, so a destination with a checksum
file is complete. Why: `ray job submit --working-dir .` uploads only what git does not
ignore, and a cluster's nodes cannot see a laptop's cache; a staged path can be named by
`--model-path` on every node.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from e5ray.errors import UsageError
from e5ray.model.resolve import OPTIONAL_FILES, TOKENIZER_FILES, resolve_model
from e5ray.store.filesystem import filesystem_for, is_local_fs, join, sha256_of, write_atomic
from e5ray.store.tempfiles import owner_tag

CHECKSUMS = "SHA256SUMS"
INFO = "e5ray-model.json"


@dataclass(frozen=True)
class StagedModel:
    destination: str
    files: dict[str, str]  # name -> sha256
    bytes: int


def _model_files(
    model: str, model_path: str | None, cache_dir: str | None, options: dict[str, Any] | None
) -> list[Path]:
    files = resolve_model(model, model_path, cache_dir, options)
    found = list(files.weight_files())
    for name in TOKENIZER_FILES + OPTIONAL_FILES:
        for folder in (files.onnx_path.parent, files.onnx_path.parent.parent, files.tokenizer_path.parent):
            if (folder / name).is_file():
                found.append(folder / name)
                break
    names = [p.name for p in found]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise UsageError(f"model {model}: several files named {sorted(duplicates)}; cannot lay them out flat")
    return found


def stage_model(
    model: str,
    destination: str,
    model_path: str | None = None,
    cache_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> StagedModel:
    """Copy `model`'s files to `destination` with a checksum file; returns what was staged."""
    sources = _model_files(model, model_path, cache_dir, storage_options)
    fs, root = filesystem_for(destination, storage_options)
    fs.makedirs(root, exist_ok=True)
    local = fsspec.filesystem("file")
    sums: dict[str, str] = {}
    total = 0
    for path in sources:
        sums[path.name] = sha256_of(local, str(path))
        total += path.stat().st_size
        target = join(root, path.name)
        if is_local_fs(fs):  # copy beside the target, then rename: never a half-written file
            tmp = f"{target}.tmp-{owner_tag()}"
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        else:  # one PUT (or a multipart upload) is atomic on object stores
            fs.put_file(str(path), target)
    weights = [p.name for p in sources if p.suffix == ".onnx" or "onnx_data" in p.name or p.name.endswith(".data")]
    info = {
        "model": model,
        "weights_sha256": hashlib.sha256("".join(sums[n] for n in sorted(weights)).encode()).hexdigest(),
        "files": sums,
    }
    write_atomic(fs, join(root, INFO), json.dumps(info, indent=1).encode())
    checksums = "".join(f"{sha}  {name}\n" for name, sha in sorted(sums.items()))
    write_atomic(fs, join(root, CHECKSUMS), checksums.encode())
    return StagedModel(destination, sums, total)


def check_staged(destination: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Problems with a staged copy: files missing or differing from SHA256SUMS (empty: sound)."""
    fs, root = filesystem_for(destination, storage_options)
    try:
        lines = fs.cat_file(join(root, CHECKSUMS)).decode().splitlines()
    except FileNotFoundError:
        return [f"{destination}: no {CHECKSUMS} (not staged, or staging did not finish)"]
    problems = []
    for line in lines:
        sha, _, name = line.partition("  ")
        try:
            actual = sha256_of(fs, join(root, name))
        except FileNotFoundError:
            problems.append(f"{name}: missing")
            continue
        if actual != sha:
            problems.append(f"{name}: sha256 {actual[:16]}..., {CHECKSUMS} says {sha[:16]}...")
    return problems
