"""Where the Ray executor's pool runs: joining the cluster in RAY_ADDRESS, or starting a local Ray.

The cluster in RAY_ADDRESS (set inside a Ray job too) is joined with a deadline and a
one-line error that names the address and the auth setting, never Ray's endless retries;
token authentication is used as that cluster says (`e5ray.executors.ray_auth`), not as a
local token file suggests. The cluster joined is left at the end of a command
(`leave_cluster`, called through `e5ray.executors.base.end_command` by the CLI and the jobs/
entrypoints) with the watchdog's bound (`e5ray.executors.watchdog`), not in Ray's own atexit,
which waits for good on a GCS that stopped answering (a library caller of `run_job` still
leaves through that atexit).
Without it, a fresh local Ray with a temp dir of its own is started, which never follows
Ray's address file to another (possibly dead) cluster on the machine. Ray Data's own
progress output is off unless --verbose (e5ray reports progress itself).

Part of the Ray executor (`e5ray.executors.ray`): with it and `ray_exit` (the fast end of a local
Ray at exit), the only modules that import ray.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import socket
import tempfile
import threading

import ray

from e5ray import timeline
from e5ray.errors import UsageError
from e5ray.executors.base import at_command_end
from e5ray.executors.ray_auth import auth_setting, settle_auth_mode
from e5ray.executors.ray_exit import abandon, end_local_ray
from e5ray.executors.watchdog import call_within, lost_timeout_s

RAY_JOIN_TIMEOUT_S = 60.0  # joining a cluster: how long before giving up with one line ($E5RAY_RAY_CONNECT_TIMEOUT)
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class RayJoinError(UsageError, RuntimeError):
    """The cluster named by RAY_ADDRESS cannot be reached or refused this client."""


def _host_port(address: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address.strip())
    return (match.group(1), int(match.group(2))) if match else None


def _reachable(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _give_up(address: str, timeout: float) -> None:
    # ray.init retries inside native code and cannot be interrupted; a run that cannot
    # join must not hang, so it ends here with the one line a user needs.
    abandon(
        f"e5ray: error: no answer from the Ray cluster at {address} (RAY_ADDRESS) within {timeout:.0f} s "
        f"({auth_setting()}); check the address and the token, or unset RAY_ADDRESS to run on a local Ray",
        2,
    )


def join_cluster(address: str, timeout: float | None = None) -> None:
    """Connect to the cluster at `address`; one-line RayJoinError (or exit 2 after
    `timeout` s of silence) instead of Ray's endless retries."""
    timeout = timeout or float(os.environ.get("E5RAY_RAY_CONNECT_TIMEOUT") or RAY_JOIN_TIMEOUT_S)
    where = _host_port(address)
    if where and not _reachable(*where, timeout=min(10.0, timeout)):
        raise RayJoinError(
            f"cannot reach the Ray cluster at {address} (RAY_ADDRESS; {auth_setting()}): nothing listens there; "
            "check the address, or unset RAY_ADDRESS to run on a local Ray"
        )
    if where and not address.startswith("ray://"):  # a GCS address: ask it whether it wants a token
        settle_auth_mode(address, f"{where[0]}:{where[1]}")
    watchdog = threading.Timer(timeout, _give_up, args=(address, timeout))
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    except Exception as exc:  # Ray raises ConnectionError, AuthenticationError, RuntimeError ...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RayJoinError(
            f"cannot join the Ray cluster at {address} (RAY_ADDRESS; {auth_setting()}): {type(exc).__name__}: "
            f"{reason}; a cluster with token authentication needs RAY_AUTH_MODE=token and its token "
            "(RAY_AUTH_TOKEN or ~/.ray/auth_token)"
        ) from None
    finally:
        watchdog.cancel()
    _joined.append(address)
    at_command_end(leave_cluster)


_joined: list[str] = []  # the address of the cluster this process joined, if any


def leave_cluster(exit_code: int) -> None:
    """Disconnect from the cluster joined, waiting at most $E5RAY_RAY_LOST_TIMEOUT: Ray's disconnect
    (and its atexit `ray.shutdown()`) waits for good on a GCS that stopped answering after the run's
    work was done, so the process then ends here, with `exit_code` and one warning line."""
    if not _joined or not ray.is_initialized():
        return
    timeout = lost_timeout_s()
    left, _ = call_within(ray.shutdown, timeout, "e5ray-ray-leave")
    if not left:
        abandon(
            f"e5ray: warning: the Ray cluster at {_joined[-1]} (RAY_ADDRESS) did not answer the disconnect "
            f"within {timeout:g} s; left without it (the run's result above stands)",
            exit_code,
        )
    _joined.clear()


def _remove_local_ray(temp_dir: str) -> None:
    # Every process of this Ray is gone first (end_local_ray also kills one started late that
    # names temp_dir), so none can make its session folders again after they are removed.
    end_local_ray(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)


NO_PRESTART = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}


def start_local_ray(num_cpus: int | None = None) -> str:
    """Start a fresh single-node Ray of our own; returns its temp dir.

    `address="local"` never follows Ray's address file (`ray_current_cluster`), so a
    dead or foreign cluster that the machine last knew cannot capture or hang the run,
    and a temp dir of our own keeps this Ray's sockets, logs and address file apart from
    every other Ray here. The directory goes when the process exits.
    """
    # Short, under /tmp: Ray's unix socket paths below it are limited to ~107 bytes.
    base = "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else None
    temp_dir = tempfile.mkdtemp(prefix="e5ray-", dir=base)
    atexit.register(_remove_local_ray, temp_dir)
    auth_log = logging.getLogger(_AUTH_LOGGER)
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)  # "token authentication is enabled", on every run: Ray's default, not news
    try:
        # No dashboard: a second to start, memory held, nothing to serve for one run. No
        # prestarted workers: Ray boots one idle Python worker per CPU at start, on the CPUs the
        # pool's actors need for their own boot (each actor gets a process of its own anyway);
        # first vector 12.9-17.6 s without them against 15.8-20.6 s with (BENCHMARKS.md, start-up).
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            logging_level=logging.WARNING,
            _temp_dir=temp_dir,
            _system_config=NO_PRESTART,
        )
    finally:
        auth_log.setLevel(level)
    return temp_dir


def quiet_ray_data(verbose: bool = False) -> None:
    """Ray Data's own progress blocks and plan lines only with --verbose: e5ray reports progress itself."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = verbose
    context.enable_operator_progress_bars = verbose
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = verbose
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.WARNING)
    # Turning the bars off makes Ray Data warn that they are off, once per process.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.INFO if verbose else logging.ERROR)
    # A task's error is logged by these with Ray's traceback, then raised to the driver, which says it
    # in one line (a lost pool: `e5ray.executors.ray`) or, for a bug, with the traceback anyway.
    for name in ("ray.data._internal.execution.streaming_executor_state", "ray.data.exceptions"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.CRITICAL)


_local_ray: list[str] = []  # the temp dir of the local Ray this process started, if any


def ensure_ray(verbose: bool | None = None) -> None:
    """Join the cluster named by RAY_ADDRESS (set inside a Ray job too); else start a
    fresh local Ray that ignores any other cluster on the machine. `verbose` (default:
    $E5RAY_VERBOSE=1, set by --verbose) shows Ray Data's own progress."""
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            join_cluster(address)
        else:
            _local_ray.append(start_local_ray())
    timeline.mark("ray_ready")
    quiet_ray_data(os.environ.get("E5RAY_VERBOSE") == "1" if verbose is None else verbose)
