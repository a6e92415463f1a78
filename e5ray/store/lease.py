"""Leases: how a running job and `e5ray gc` share an output without losing files.

A run holds `leases/<run id>.json` in the output from before it produces its first file
until it has committed (or failed). The object holds the run id, its start, the
heartbeat interval and timeout, and every file the run has produced or will reference
so far (carried forward, reused, embedded). A thread in the driver rewrites it every
`interval` seconds; its modification time is the heartbeat. gc treats a lease as live
while its heartbeat is younger than its timeout, and then spares every file younger
than the lease's start (temporary files, finished shards not yet committed) and every
file the lease lists. A lease whose heartbeat stopped (a killed driver) expires after
the timeout, or at once when it names a driver process on gc's own host that no
longer exists; gc says which leases it honoured and removes expired ones.

Times: `started` is the store's own modification time of the lease's first write, so it
compares with the store's times of the files the run writes, whatever the driver's
clock says; S3 times have one-second resolution, hence `START_SLACK_S`.

Why the order in gc matters (see `e5ray.output.gc`): it lists files, then reads leases, then
reads manifests. A file a live run made is in the listing only if it was written after
the run's lease, so the lease is seen; a run that dropped its lease had committed
before, so its manifest is seen.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from fsspec import AbstractFileSystem

from e5ray.errors import ConfigError, LeaseLostError, UnsafePathError
from e5ray.store.filesystem import info_seconds, join, write_atomic
from e5ray.store.paths import confined

log = logging.getLogger("e5ray")

LEASES_DIR = "leases"
DEFAULT_LEASE_INTERVAL_S = 30.0
DEFAULT_LEASE_TIMEOUT_S = 600.0
START_SLACK_S = 2.0


class Lease:
    """The lease a run holds on its output; `start()` it before producing files."""

    def __init__(
        self,
        fs: AbstractFileSystem,
        root: str,
        run_id: str,
        interval: float = DEFAULT_LEASE_INTERVAL_S,
        timeout: float = DEFAULT_LEASE_TIMEOUT_S,
    ) -> None:
        if interval <= 0 or timeout <= interval:
            raise ConfigError(
                f"lease interval must be > 0 and below its timeout, got interval {interval} s, timeout {timeout} s "
                "(--lease-interval, --lease-timeout)"
            )
        self.fs, self.root, self.run_id = fs, root, run_id
        self.interval, self.timeout = interval, timeout
        self.rel = f"{LEASES_DIR}/{run_id}.json"
        self.started = 0.0
        self.renewed = 0.0  # monotonic time of the last successful write
        self._files: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _payload(self) -> bytes:
        with self._lock:
            files = sorted(self._files)
        return json.dumps(
            {
                "run_id": self.run_id,
                "started": self.started,
                "interval_s": self.interval,
                "timeout_s": self.timeout,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "files": files,
            }
        ).encode()

    def _write(self) -> None:
        write_atomic(self.fs, join(self.root, self.rel), self._payload())
        self.renewed = time.monotonic()

    def start(self) -> Lease:
        self._write()
        self.started = info_seconds(self.fs.info(join(self.root, self.rel))) or time.time()
        self._write()
        self._thread = threading.Thread(target=self._beat, name=f"e5ray-lease-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._write()
            except Exception as exc:  # the next beat tries again; the commit checks freshness
                log.warning("lease %s: heartbeat failed: %s: %s", self.run_id, type(exc).__name__, exc)

    def add(self, paths: list[str], flush: bool = False) -> None:
        """Files the run produced or will reference; `flush` writes the lease now."""
        with self._lock:
            self._files.update(paths)
        if flush:
            self._write()

    def check_held(self) -> None:
        """Refuse to commit when the heartbeat may have lapsed (gc could have collected files)."""
        age = time.monotonic() - self.renewed
        if age >= self.timeout:
            raise LeaseLostError(
                f"lease {self.rel} was last renewed {age:.0f} s ago (timeout {self.timeout:g} s): "
                "gc may have collected this run's files; nothing was committed, run again"
            )

    def release(self, remove: bool = True) -> None:
        """Stop the heartbeat and remove the lease; `remove=False` leaves it to expire (when
        the store stopped answering, removing it would only wait for another timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)  # a beat stuck on a frozen store ends by its own timeout
        if not remove:
            return
        try:
            self.fs.rm_file(join(self.root, self.rel))
        except FileNotFoundError:
            pass
        except Exception as exc:  # an expired lease is harmless: gc removes it
            log.warning("lease %s: could not remove: %s: %s", self.rel, type(exc).__name__, exc)


@dataclass(frozen=True)
class LeaseView:
    """A lease as gc sees it."""

    rel: str
    run_id: str
    started: float
    heartbeat_age: float
    timeout: float
    files: frozenset[str]
    driver_gone: bool = False  # its driver ran on this host and that process no longer exists

    @property
    def live(self) -> bool:
        return self.heartbeat_age < self.timeout and not self.driver_gone

    def protects(self, rel: str, mtime: float) -> bool:
        return rel in self.files or mtime >= self.started - START_SLACK_S

    def describe(self) -> str:
        state = "honoured" if self.live else ("driver gone" if self.driver_gone else "expired") + ", not honoured"
        return (
            f"lease {self.run_id} ({state}): started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.started))}, "
            f"heartbeat {self.heartbeat_age:.0f} s ago (timeout {self.timeout:g} s), {len(self.files)} file(s) listed"
        )


def _alive(pid: int) -> bool:
    """Whether a process of this host exists (a reused pid reads as alive: the safe side)."""
    if pid <= 0:
        return True  # unknown: assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_leases(fs: AbstractFileSystem, root: str, now: float | None = None) -> list[LeaseView]:
    """Every lease in the output; an unreadable one counts as live, started at time 0, so
    it spares everything until it expires (a damaged lease must never make gc bolder)."""
    base = join(root, LEASES_DIR)
    if not fs.exists(base):
        return []
    now = time.time() if now is None else now
    views = []
    for path, info in sorted(fs.find(base, detail=True).items()):
        rel = path[len(root.rstrip("/")) + 1 :]
        if not rel.endswith(".json"):
            continue
        mtime = info_seconds(info)
        try:
            with fs.open(path, "rb") as fh:
                data = json.loads(fh.read())
            files = frozenset(confined(f, f"{rel}: files") for f in data.get("files", []))
            started, timeout = float(data["started"]), float(data["timeout_s"])
            run_id = str(data["run_id"])
            gone = data.get("host") == socket.gethostname() and not _alive(int(data.get("pid", 0)))
        except UnsafePathError:
            raise
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            if not fs.exists(path):
                continue  # released meanwhile
            files, started, timeout, run_id, gone = frozenset(), 0.0, DEFAULT_LEASE_TIMEOUT_S, rel, False
        views.append(LeaseView(rel, run_id, started, max(0.0, now - mtime), timeout, files, gone))
    return views
