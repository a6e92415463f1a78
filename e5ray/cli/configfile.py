"""`--config FILE`: a YAML or TOML file whose keys are the command's flags.

    # e5ray.yaml                        # e5ray.toml
    input: s3://bucket/corpus/          input = "s3://bucket/corpus/"
    output: s3://bucket/emb/            output = "s3://bucket/emb/"
    model: intfloat/multilingual-e5-small
    max-length: 256                     max_length = 256
    keep-columns: [lang, url]           keep_columns = ["lang", "url"]

Keys are flag names without the leading dashes (`max-length` or `max_length`). Values
from the file replace the defaults; flags on the command line win over the file. An
unknown key is an error that lists the valid ones, so a typo cannot be ignored.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from e5ray.errors import UsageError


class ConfigFileError(UsageError):
    """The config file cannot be read, or names a key that is not a flag."""


def load_config_file(path: str) -> dict[str, Any]:
    """The file's keys (dashes turned to underscores) and values."""
    file = Path(path).expanduser()
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigFileError(f"--config {path}: {exc.strerror or exc}") from None
    suffix = file.suffix.lower()
    try:
        if suffix == ".toml":  # tomllib from Python 3.11; tomli before
            toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
            data: Any = toml.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = importlib.import_module("yaml").safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigFileError(f"--config {path}: unknown file type {suffix!r}; valid: .yaml, .yml, .toml, .json")
    except ConfigFileError:
        raise
    except Exception as exc:  # the parsers' own errors say where the syntax is wrong
        raise ConfigFileError(f"--config {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"--config {path}: expected a mapping of flag names to values, got {type(data).__name__}")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def check_keys(values: dict[str, Any], valid: dict[str, str], path: str) -> None:
    """`valid`: option dest -> its flag, as the parser knows them."""
    unknown = sorted(set(values) - set(valid))
    if unknown:
        flags = ", ".join(sorted(v.lstrip("-") for v in valid.values()))
        raise ConfigFileError(f"--config {path}: unknown key(s) {', '.join(unknown)}; valid: {flags}")


def normalise(values: dict[str, Any]) -> dict[str, Any]:
    """Lists given for comma-separated flags (`keep-columns: [a, b]`) become 'a,b'."""
    return {k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in values.items()}
