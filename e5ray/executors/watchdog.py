"""When the Ray cluster is lost: the watchdog the driver runs beside the pool's results loop.

Why: the driver waits for the pool's results (Ray Data's `iter_rows`) with no end of its
own. A head whose GCS stops answering (a frozen or wedged process keeps its TCP connections
open, so nothing fails), or worker nodes lost with no node left that can host an actor,
leave that wait blocked forever. The watchdog bounds it: every probe period it asks the
cluster, in a daemon thread of its own, which nodes are alive (a call to a frozen GCS may
block for good, so it is never awaited), and declares the cluster lost when

- (a) the head (GCS) answered no probe for `timeout_s`, or
- (b) the last `no_host_s` of answers all said no live node can host one actor of the pool,
  and no unit finished in that time (a cluster that can grow, whose pending actors make
  the autoscaler add nodes, is not held to this: `--deadline` bounds that wait).

(b) has a bound of its own, longer (NO_NODE_TIMEOUT_S, $E5RAY_RAY_NO_NODE_TIMEOUT, 300 s): an
autoscaler the driver cannot see (KubeRay with workers at zero, a launcher config on another
machine) adds a node for a pending actor in about one to five minutes (a cloud VM's or a
pod's start), and a run ended in the meantime would be a false alarm.

The default bound (LOST_TIMEOUT_S, $E5RAY_RAY_LOST_TIMEOUT) is Ray's own: its Python
client gives a GCS 30 s to answer a connect (`py_gcs_connect_timeout_s`), which is also
less than the 60 s after which Ray's own processes give up on a GCS
(`gcs_rpc_server_reconnect_timeout_s`, whose end is a crash, not a line). Probes run every
3 s, Ray's node health-check period (`health_check_period_ms`). A node that dies is only
"not alive" once Ray's health checks say so: `health_check_failure_threshold` (5) x
`health_check_period_ms` (3 s) for a node that is gone, up to 5 x (3 s + the 10 s
`health_check_timeout_ms`) for a frozen one; (b)'s bound counts from then.

Invariants: plain Python, no Ray (the Ray calls are the `probe` given); `on_lost` is called
at most once, from the watchdog's thread, with a line naming what stopped answering; at
most one probe is in flight, so a blocked one costs one thread, not one per period.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from e5ray.errors import ConfigError

LOST_TIMEOUT_S = 30.0  # Ray's py_gcs_connect_timeout_s; under its 60 s gcs_rpc_server_reconnect_timeout_s
NO_NODE_TIMEOUT_S = 300.0  # (b): time for an autoscaler the driver cannot see to add a node
PROBE_PERIOD_S = 3.0  # Ray's health_check_period_ms
ENV = "E5RAY_RAY_LOST_TIMEOUT"
ENV_NO_NODE = "E5RAY_RAY_NO_NODE_TIMEOUT"
T = TypeVar("T")


def _seconds(name: str, default: float, environ: dict[str, str] | None, off: str) -> float:
    raw = (os.environ if environ is None else environ).get(name) or ""
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a number of seconds >= 0 (0: {off}), got {raw!r}")
    return value


def lost_timeout_s(environ: dict[str, str] | None = None) -> float:
    """$E5RAY_RAY_LOST_TIMEOUT in seconds (default LOST_TIMEOUT_S); 0 turns the watchdog off."""
    return _seconds(ENV, LOST_TIMEOUT_S, environ, "no watchdog")


def no_node_timeout_s(environ: dict[str, str] | None = None) -> float:
    """$E5RAY_RAY_NO_NODE_TIMEOUT in seconds (default NO_NODE_TIMEOUT_S): (b)'s bound; 0 turns (b) off."""
    return _seconds(ENV_NO_NODE, NO_NODE_TIMEOUT_S, environ, "never end a run for want of a node")


def call_within(fn: Callable[[], T], timeout_s: float, name: str) -> tuple[bool, T | Exception | None]:
    """`fn()` in a daemon thread, waited on for `timeout_s` (0: for good): (True, its result or the
    exception it raised) when it returned in time, else (False, None), the thread left behind (a
    Ray call to a frozen GCS never returns, and cannot be interrupted)."""
    answer: list[T | Exception] = []

    def run() -> None:
        try:
            answer.append(fn())
        except Exception as exc:  # handed to the caller, as fn raised it
            answer.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(timeout_s or None)
    return (True, answer[0]) if answer else (False, None)


def can_host(nodes: list[dict[str, Any]], num_cpus: float, num_gpus: float) -> bool:
    """Whether some live node of `nodes` (as `ray.nodes()` lists them) has the resources of one actor."""
    return any(
        n.get("Alive")
        and n.get("Resources", {}).get("CPU", 0) >= num_cpus
        and n.get("Resources", {}).get("GPU", 0) >= num_gpus
        for n in nodes
    )


@dataclass
class ClusterWatch:
    """What the probes said and when units finished; `verdict` says whether the cluster is lost."""

    timeout_s: float
    can_grow: bool = False  # a cluster whose autoscaler adds nodes for pending actors: (b) does not apply
    no_host_s: float | None = None  # (b)'s bound; None: timeout_s; 0: (b) off
    clock: Callable[[], float] = time.monotonic
    last_answer: float = field(init=False)
    last_unit: float = field(init=False)
    no_host_since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.last_answer = self.last_unit = self.clock()

    def answered(self, can_host: bool) -> None:
        """A probe came back: the head answers; `can_host`: some live node can host one actor."""
        now = self.clock()
        self.last_answer = now
        if can_host:
            self.no_host_since = None
        elif self.no_host_since is None:
            self.no_host_since = now

    def unit_finished(self) -> None:
        self.last_unit = self.clock()

    def verdict(self) -> str | None:
        """None while the cluster may still deliver; else what stopped answering, for the error line."""
        now = self.clock()
        if now - self.last_answer > self.timeout_s:
            return f"its head (GCS) answered no call for {self.timeout_s:g} s"
        no_host = self.timeout_s if self.no_host_s is None else self.no_host_s
        if (
            no_host
            and not self.can_grow
            and self.no_host_since is not None
            and now - self.no_host_since > no_host
            and now - self.last_unit > no_host
        ):
            return (
                f"no live node can host an actor of the pool and no unit finished for {no_host:g} s "
                f"(the nodes that ran it were lost; {ENV_NO_NODE} sets this wait)"
            )
        return None


class Watchdog:
    """Probes the cluster every `period_s` in a daemon thread and calls `on_lost` once if `watch` says lost.

    `probe` returns whether some live node can host an actor; an exception counts as no
    answer. Stop it with `stop()` when the results loop ends.
    """

    def __init__(
        self,
        watch: ClusterWatch,
        probe: Callable[[], bool],
        on_lost: Callable[[str], None],
        period_s: float = PROBE_PERIOD_S,
    ) -> None:
        self.watch, self.probe, self.on_lost = watch, probe, on_lost
        self.period_s = min(period_s, watch.timeout_s / 4)
        self._stopped = threading.Event()
        self._in_flight: threading.Thread | None = None
        self._thread = threading.Thread(target=self._loop, name="e5ray-ray-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def _ask(self) -> None:
        try:
            can_host = self.probe()
        except Exception:  # an error from Ray is no answer; the verdict decides when that is too long
            return
        if not self._stopped.is_set():
            self.watch.answered(can_host)

    def tick(self) -> str | None:
        """One period: start a probe unless one is still in flight; the verdict, if lost."""
        if self._in_flight is None or not self._in_flight.is_alive():
            self._in_flight = threading.Thread(target=self._ask, name="e5ray-ray-probe", daemon=True)
            self._in_flight.start()
        return self.watch.verdict()

    def _loop(self) -> None:
        while not self._stopped.wait(self.period_s):
            reason = self.tick()
            if reason is not None and not self._stopped.is_set():
                self._stopped.set()
                self.on_lost(reason)
