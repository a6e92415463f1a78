"""Model resolution: turn a model name and an optional path into files on local disk.

Order of preference:
1. `model_path` is a local directory: use it as it is.
2. `model_path` is a remote (fsspec) URI such as `s3://bucket/models/e5-small`: copy it
   once per node into a local cache (temporary name, checked, renamed; a file lock so
   that the actors of one node download once), and reuse it while the remote listing
   is unchanged.
3. A catalogue name: downloaded by fastembed into its cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from filelock import FileLock

from e5ray.errors import ModelUnavailableError, UsageError
from e5ray.model.catalog import ModelSpec, get_spec
from e5ray.store.filesystem import feed_digest, filesystem_for, info_etag, info_mtime, is_remote

TOKENIZER_FILES = ("tokenizer.json", "config.json")
OPTIONAL_FILES = ("tokenizer_config.json", "special_tokens_map.json")
STAGED_MARKER = ".e5ray-staged.json"


@dataclass(frozen=True)
class ModelFiles:
    """Where one model's files are on this node."""

    onnx_path: Path
    tokenizer_path: Path
    config_path: Path
    tokenizer_config_path: Path | None

    def weight_files(self) -> list[Path]:
        """The .onnx file and its external-data files (`model.onnx_data`, `model.onnx.data`)."""
        extra = sorted(
            p
            for p in self.onnx_path.parent.iterdir()
            if p.name != self.onnx_path.name and p.name.startswith(self.onnx_path.name) and "data" in p.name
        )
        return [self.onnx_path, *extra]


def default_cache_dir() -> Path:
    return Path(os.environ.get("E5RAY_CACHE", Path.home() / ".cache" / "e5ray"))


def resolve_model(
    model: str,
    model_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> ModelFiles:
    """Find (or fetch) the files of `model`, preferring `model_path` when it is given."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    spec = _spec_or_none(model)
    if model_path is not None:
        path = str(model_path)
        if is_remote(path):
            return locate_files(stage_remote_dir(path, cache / "staged", storage_options), spec)
        local = Path(path.removeprefix("file://")).expanduser()
        if not local.is_dir():
            raise ModelUnavailableError(f"model_path {path!r} is not a directory")
        return locate_files(local, spec)
    if spec is None:
        get_spec(model)  # raises the UsageError that lists the known models
        raise AssertionError("unreachable")
    return locate_files(download_with_fastembed(spec, cache / "fastembed"), spec)


def _spec_or_none(model: str) -> ModelSpec | None:
    try:
        return get_spec(model)
    except UsageError:
        return None


def read_json_file(path: Path) -> dict[str, Any]:
    """A model directory's JSON file (config.json, tokenizer_config.json) as a dict."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ModelUnavailableError(f"{path}: expected a JSON object, found a {type(data).__name__}")
    return data


def locate_files(directory: Path, spec: ModelSpec | None = None) -> ModelFiles:
    """Find the ONNX file and the tokenizer files in a model directory.

    Exports differ in layout: fastembed's e5-large keeps everything at the root,
    Optimum/transformers.js exports keep `onnx/model.onnx` below the tokenizer files.
    """
    candidates = []
    if spec is not None:
        candidates.append(directory / spec.model_file)
    candidates += [directory / "model.onnx", directory / "onnx" / "model.onnx"]
    onnx_path = next((c for c in candidates if c.is_file()), None)
    if onnx_path is None:
        found = sorted(str(p.relative_to(directory)) for p in directory.rglob("*.onnx"))
        if len(found) == 1:
            onnx_path = directory / found[0]
        else:
            raise ModelUnavailableError(
                f"no model.onnx in {directory} (looked for {[str(c) for c in candidates]}); "
                f".onnx files found: {found or 'none'}"
            )

    def find(name: str) -> Path | None:
        for folder in (onnx_path.parent, directory):
            if (folder / name).is_file():
                return folder / name
        return None

    missing = [name for name in TOKENIZER_FILES if find(name) is None]
    if missing:
        raise ModelUnavailableError(
            f"model directory {directory} lacks {missing}: an E5 model directory needs the .onnx "
            f"file plus {', '.join(TOKENIZER_FILES + OPTIONAL_FILES)}"
        )
    return ModelFiles(
        onnx_path=onnx_path,
        tokenizer_path=find("tokenizer.json"),  # type: ignore[arg-type]
        config_path=find("config.json"),  # type: ignore[arg-type]
        tokenizer_config_path=find("tokenizer_config.json"),
    )


def _remote_listing(fs: Any, root: str) -> dict[str, list[Any]]:
    """Relative path -> [size, etag-or-mtime] for every file under `root`."""
    listing: dict[str, list[Any]] = {}
    for path, info in fs.find(root, detail=True).items():
        rel = path[len(root.rstrip("/")) + 1 :]
        stamp = info_etag(info) or str(info_mtime(info) or "")
        listing[rel] = [int(info.get("size") or 0), stamp]
    return listing


def stage_remote_dir(uri: str, staging_root: Path, storage_options: dict[str, Any] | None = None) -> Path:
    """Copy a remote model directory to `staging_root` once per node and return the copy.

    A copy is reused while the remote listing (names, sizes, ETags) is unchanged. The
    copy is made under a temporary name, checked against the listing, then renamed into
    place, so a crash never leaves a half-copied model that looks complete.
    """
    fs, root = filesystem_for(uri, storage_options)
    listing = _remote_listing(fs, root)
    if not listing:
        raise ModelUnavailableError(f"model_path {uri!r} is empty or does not exist")
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = staging_root / f"{Path(root).name}-{key}"
    staging_root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        marker = target / STAGED_MARKER
        if marker.is_file() and json.loads(marker.read_text()).get("listing") == listing:
            return target
        tmp = staging_root / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            for rel, (size, _) in listing.items():
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(f"{root.rstrip('/')}/{rel}", str(dest))
                if dest.stat().st_size != size:
                    raise ModelUnavailableError(
                        f"staging {uri}/{rel}: got {dest.stat().st_size} bytes, listing says {size}"
                    )
            (tmp / STAGED_MARKER).write_text(json.dumps({"uri": uri, "listing": listing}))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def download_with_fastembed(spec: ModelSpec, cache_dir: Path) -> Path:
    """Download a catalogue model through fastembed's hub client into `cache_dir`."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    registered = {
        desc.model.lower(): (cls, desc)
        for cls in TextEmbedding.EMBEDDINGS_REGISTRY
        for desc in cls._list_supported_models()
    }
    if spec.name.lower() not in registered:
        # fastembed's catalogue lacks the smaller E5 models: register them (mean pooling,
        # normalised) so that its downloader knows the files.
        TextEmbedding.add_custom_model(
            model=spec.name,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf=spec.hf_repo),
            dim=spec.dim,
            model_file=spec.model_file,
            additional_files=list(spec.additional_files),
            size_in_gb=spec.size_gb,
        )
        registered = {
            desc.model.lower(): (cls, desc)
            for cls in TextEmbedding.EMBEDDINGS_REGISTRY
            for desc in cls._list_supported_models()
        }
    cls, description = registered[spec.name.lower()]
    try:
        return Path(cls.download_model(description, str(cache_dir), retries=1))
    except Exception as exc:  # the hub client raises many types; all mean "not available"
        raise ModelUnavailableError(
            f"could not download {spec.name} from the model hub ({type(exc).__name__}: {exc}).\n"
            f"On machines without hub access, stage the ONNX export ({spec.hf_repo}: "
            f"{spec.model_file}{', ' + ', '.join(spec.additional_files) if spec.additional_files else ''}, "
            "tokenizer.json, tokenizer_config.json, special_tokens_map.json, config.json) "
            "in a directory and pass it as model_path / --model-path: a local path, or an "
            "s3:// prefix that every node can read."
        ) from None


@lru_cache(maxsize=16)
def _sha256_of(paths: tuple[str, ...], stamps: tuple[tuple[int, int], ...]) -> str:
    # Every process of a job (driver, each actor) needs the hash; hashing 2 GB takes
    # seconds, so it is kept on disk, keyed by path, size and mtime, for the next one.
    memo = default_cache_dir() / "sha256" / (hashlib.sha256(repr((paths, stamps)).encode()).hexdigest() + ".txt")
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            feed_digest(digest, fh)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.write_text(digest.hexdigest())
        os.replace(tmp, memo)
    except OSError:  # a read-only home is fine: the hash is just recomputed next time
        pass
    return digest.hexdigest()


def model_sha256(files: ModelFiles) -> str:
    """sha256 over the .onnx file and its external data, in order (memoised per process and on disk)."""
    paths = files.weight_files()
    stamps = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    return _sha256_of(tuple(str(p.resolve()) for p in paths), stamps)
