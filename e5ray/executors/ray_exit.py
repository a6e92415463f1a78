"""Ending the local Ray this process started, fast, and leaving none of its processes behind.

Why: Ray's own `ray.shutdown()` stops a local node's processes one after the other (raylet,
GCS, monitor, agents), each given up to a second to exit, and its monitor ignores SIGTERM,
so a small run waited ~1.5 s after its manifest was committed and its summary printed
(BENCHMARKS.md, start-up). Here the raylet goes first, then the others together.

Invariants:
- only a local Ray that this process started is ended here (a joined cluster is only left);
- every process of the node when the end began (raylet, GCS, agents) and every descendant
  of theirs (the actors' workers, whoever their parent is by then) is gone when `end_local_ray` returns:
  the node's processes asked with SIGTERM and SIGKILLed once their grace is spent, the rest
  SIGKILLed once Ray's disconnect returns (only a process stuck in uninterruptible sleep can
  outlive that, after REAP_TIMEOUT_S of waiting); a process is recognised by its pid and its
  start time, so a pid reused by an unrelated process is never signalled; other children of
  this process (not Ray's) are never touched.
- a cluster found lost (`abandon`) is never asked anything again: Ray's disconnect and its
  atexit `ray.shutdown()` wait on a frozen GCS, so the process prints its line and ends with
  `os._exit`; a joined cluster is left as it is, a local Ray of ours has its processes SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import ray

REAP_TIMEOUT_S = 10.0  # how long a SIGKILLed process may take to go before it is left to the kernel
Process = tuple[int, str]  # (pid, start time in clock ticks since boot, as /proc says)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].decode().split()
    except OSError:
        return None


def descendants(root: int | None = None) -> list[Process]:
    """Every living process below `root` (default: this one), from /proc; [] where /proc is not."""
    root = os.getpid() if root is None else root
    children: dict[int, list[Process]] = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        fields = _stat(int(name)) if name.isdigit() else None
        if fields and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append((int(name), fields[19]))
    found: list[Process] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def naming(text: str) -> list[Process]:
    """Every living process (but this one) whose command line holds `text`: a local Ray's
    processes all name its temp dir, whoever their parent is by then."""
    found: list[Process] = []
    needle = text.encode()
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if needle not in fh.read():
                    continue
        except OSError:
            continue
        fields = _stat(int(name))
        if fields and fields[0] != "Z":
            found.append((int(name), fields[19]))
    return found


def alive(processes: list[Process]) -> list[Process]:
    """Those of `processes` still running (a zombie has ended: it only waits to be reaped)."""
    return [(pid, start) for pid, start in processes if (f := _stat(pid)) and f[0] != "Z" and f[19] == start]


def _stop(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM all of `procs` at once; SIGKILL those still running after `grace_s`."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def _stop_node(node: Any, grace_s: float) -> None:
    """`Node.kill_all_processes`, faster: the raylet first and alone (on SIGTERM it ends its
    workers, ~0.1 s), then the rest together, given `grace_s` / 10 (the GCS takes ~0.05 s). Ray stops them one by
    one with a second each, and its monitor never answers SIGTERM, so that second is always spent.
    The GCS must not be stopped with the raylet: both then wait seconds on each other."""
    infos = {kind: [i.process for i in found] for kind, found in node.all_processes.items()}
    _stop(infos.pop("raylet", []), grace_s)
    _stop([p for procs in infos.values() for p in procs], grace_s / 10)


def end_local_ray(temp_dir: str | None = None, grace_s: float = 1.0) -> None:
    """Disconnect from the local Ray this process started and end all of its processes.

    Ray's disconnect runs as in `ray.shutdown()`; only the stopping of the node's processes
    is done together. Whatever of the node still runs then (an actor's worker whose raylet
    went first; any process naming `temp_dir`, the node's own) is SIGKILLed and waited for.
    """
    node = getattr(ray._private.worker, "_global_node", None)
    before: list[Process] = []
    if node is not None and hasattr(node, "all_processes"):
        for infos in node.all_processes.values():
            for info in infos:
                pid = info.process.pid
                before += alive([(pid, stat[19])]) if (stat := _stat(pid)) else []
                before += descendants(pid)
        node.kill_all_processes = lambda **_: _stop_node(node, grace_s)
    if ray.is_initialized():
        ray.shutdown()
    # What still runs (the actors' workers, whose raylet went first) holds nothing: this runs at
    # the process's exit, after the commit or a failure. Waiting for them to notice cost ~0.4 s.
    # A worker the raylet started after `before` was taken names the temp dir too.
    before += [p for p in (naming(temp_dir) if temp_dir else []) if p not in before]
    for pid, _ in alive(before):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # SIGKILL cannot end a process in uninterruptible sleep (D state); bounded, like Ray's own reap.
    deadline = time.monotonic() + REAP_TIMEOUT_S
    while alive(before) and time.monotonic() < deadline:
        time.sleep(0.01)


def abandon(line: str, exit_code: int, temp_dir: str | None = None) -> None:
    """End this process now, without a word to Ray: print `line` on stderr, SIGKILL the
    processes of the local Ray at `temp_dir` (if this process started one) and remove that
    dir, then `os._exit(exit_code)`. No atexit handler runs (Ray's own would wait on the lost
    cluster); what the run finished has markers on the store, and nothing was committed."""
    print(line, file=sys.stderr, flush=True)
    if temp_dir:
        for pid, _ in alive(naming(temp_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    time.sleep(0.5)  # let a stderr filter (e5ray.cli.quiet) forward the line before the process goes
    os._exit(exit_code)
