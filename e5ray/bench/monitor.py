"""What a process tree costs: peak RSS and CPU time of a process and its descendants, read from /proc.

Linux only (/proc). Each stage runs in its own process, so its peak RSS is its own; the job's
peak also counts the Ray processes it started, which `ProcessTreeSampler` finds by walking
parent pids.
"""

from __future__ import annotations

import os
import platform
import resource
import threading
from pathlib import Path
from typing import Any

import numpy as np


def _read_proc(pid: int) -> tuple[int, str, int, int] | None:
    """(ppid, cmdline, VmHWM kB, CPU ticks used) of `pid`, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        ppid = int(fields[1])
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        hwm = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
                break
        return ppid, cmdline, hwm, ticks
    except (OSError, ValueError, IndexError):
        return None


def _is_actor(names: set[str]) -> bool:
    """Whether a process's command lines show a Ray Data actor running the embedding."""
    joined = " | ".join(names)
    return "ShardEmbedActor" in joined or "MapWorker" in joined


class ProcessTreeSampler:
    """Samples the peak RSS (VmHWM) of a process and all its descendants, every `interval` s.

    VmHWM is each process's own high-water mark, so a sample shortly before a process
    exits already holds its peak; sampling only has to see each process alive once.
    Summing peaks over processes overcounts pages they share (the model file is mmapped
    by nobody here, but Ray's object store is shared memory): read the sum as an upper bound.
    """

    def __init__(self, root_pid: int | None = None, interval: float = 0.2) -> None:
        self.root = root_pid or os.getpid()
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self.ticks: dict[int, int] = {}
        self.names: dict[int, set[str]] = {}
        self.ignored: set[int] = set()
        self.ignored_ticks = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        table: dict[int, tuple[int, str, int, int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                info = _read_proc(int(entry))
                if info is not None:
                    table[int(entry)] = info
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo, tree = [self.root], []
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        for pid in tree:
            if pid in table and pid not in self.ignored:
                _, cmdline, hwm, ticks = table[pid]
                self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
                self.ticks[pid] = max(self.ticks.get(pid, 0), ticks)
                self.names.setdefault(pid, set()).add(cmdline[:200])

    def actor_pids(self) -> set[int]:
        """Processes seen so far that ran an embedding actor."""
        return {pid for pid in self.peaks if pid != self.root and _is_actor(self.names.get(pid, set()))}

    def forget(self, pids: set[int]) -> None:
        """Leave `pids` out of every peak from now on; their CPU time so far still counts."""
        for pid in pids:
            self.ignored_ticks += self.ticks.pop(pid, 0)
            self.peaks.pop(pid, None)
            self.names.pop(pid, None)
        self.ignored |= pids

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> ProcessTreeSampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the tree has used so far, as last sampled."""
        return (sum(self.ticks.values()) + self.ignored_ticks) / os.sysconf("SC_CLK_TCK")

    def summary(self) -> dict[str, Any]:
        """Peaks in MiB: the driver, the embedding actors, other Ray workers, Ray's own services."""
        mb = 1024.0
        driver = self.peaks.get(self.root, 0)
        actors, workers, system = {}, {}, {}
        for pid, peak in self.peaks.items():
            if pid == self.root:
                continue
            if _is_actor(self.names.get(pid, set())):
                actors[pid] = peak
            elif "ray::" in " | ".join(self.names.get(pid, ())):
                workers[pid] = peak
            else:
                system[pid] = peak
        return {
            "driver_mb": round(driver / mb, 1),
            "actor_mb": round(max(actors.values(), default=0) / mb, 1),
            "actors": len(actors),
            # What the job itself holds: the driver plus its embedding actors.
            "job_mb": round((driver + sum(actors.values())) / mb, 1),
            "other_ray_workers_mb": round(sum(workers.values()) / mb, 1),
            "other_ray_workers": len(workers),
            "ray_services_mb": round(sum(system.values()) / mb, 1),
            "tree_total_mb": round(sum(self.peaks.values()) / mb, 1),
            "processes": len(self.peaks),
            "by_process": sorted(
                (
                    {"pid": pid, "mb": round(peak / mb, 1), "names": sorted(n[:80] for n in self.names.get(pid, ()))}
                    for pid, peak in self.peaks.items()
                ),
                key=lambda p: -p["mb"],
            ),
        }


def machine_cpu_times() -> dict[str, float]:
    """Seconds of CPU time the whole machine has spent busy, in steal, and in total (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(fields[:8])
    return {"busy": (total - idle - iowait - steal) / tick, "steal": steal / tick, "total": total / tick}


def own_cpu_seconds() -> float:
    """CPU time of this process and of the children it has waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def self_peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # Linux: kB


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    from e5ray.model.embedder import available_cpus

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"onnxruntime": ort.__version__, "numpy": np.__version__}
    for name in ("fastembed", "ray", "tokenizers"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # not installed: that contestant is skipped or fails on its own
            versions[name] = None
    return {"cpus": available_cpus(), "cpu_model": cpu, "python": platform.python_version(), **versions}
