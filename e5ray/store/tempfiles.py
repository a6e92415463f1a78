"""Temporary files in an output: who wrote them, and removing those whose writer is gone.

Every temporary file e5ray writes into a local output carries its writer's host and pid
in its name (`owner_tag()`), e.g. `.part-0001.parquet-<key>.host~4242.x1y2.parquet.tmp`
or `manifest.json.tmp-host~4242-1a2b3c4d`. A process that is not alive can never finish
its file, so on the same host such a file is garbage at once, whatever its age: an
interrupted run removes its workers' files after they stopped, and `gc` removes the
files of dead runs without waiting for `--min-age`. Files of other hosts (a cluster's
workers) or of live processes are left to the age rule.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import time
from typing import Any

_TAG_RE = re.compile(r"([A-Za-z0-9_]+)~(\d+)")  # host has no '.' or '-', so the tag's bounds are clear
TEMP_SUFFIXES = (".tmp",)


@functools.cache  # the host does not change; asking for it cost ~1 ms per file written under load
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def owner_tag() -> str:
    """`host~pid` of this process, for the names of the temporary files it writes."""
    return f"{_host()}~{os.getpid()}"


def is_temp_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(TEMP_SUFFIXES) or ".tmp-" in base


def owner_of(name: str) -> tuple[str, int] | None:
    """(host, pid) from a temporary file's name, or None for names without a tag."""
    base = name.rsplit("/", 1)[-1]
    if not is_temp_name(base):
        return None
    match = _TAG_RE.search(base)
    return (match.group(1), int(match.group(2))) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def writer_is_dead(name: str) -> bool:
    """True when the file's writer ran on this host and is no longer alive."""
    owner = owner_of(name)
    return owner is not None and owner[0] == _host() and not _alive(owner[1])


def remove_dead_temp_files(
    root: str, directories: tuple[str, ...], wait_s: float = 5.0, include_own: bool = False
) -> list[str]:
    """Delete temporary files under local `root`/`directories` whose writers on this host
    are dead (and, with `include_own`, this process's: a driver that stopped writing);
    waits up to `wait_s` for writers that are still stopping. Returns the deleted paths
    relative to `root`."""
    deadline = time.monotonic() + wait_s
    deleted: list[str] = []
    while True:
        pending = False
        for directory in directories:
            base = os.path.join(root, directory) if directory else root
            if not os.path.isdir(base):
                continue
            for name in os.listdir(base):
                path = os.path.join(base, name)
                owner = owner_of(name)
                if owner is None or owner[0] != _host() or (owner[1] == os.getpid() and not include_own):
                    continue
                if owner[1] == os.getpid() or not _alive(owner[1]):
                    try:
                        os.unlink(path)
                        deleted.append(os.path.relpath(path, root))
                    except FileNotFoundError:
                        pass
                else:
                    pending = True
        if not pending or time.monotonic() >= deadline:
            return sorted(deleted)
        time.sleep(0.2)


def mtime_of(info: dict[str, Any]) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    if value is None:
        return 0.0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)
