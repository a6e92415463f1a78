"""Timeouts and bounded retries for every object-store call, and the run's deadline.

Why: s3fs sets no overall deadline, and a store that stops answering (a frozen process,
a dropped route) accepts the TCP connection and then never replies, so an unbounded
read blocks a worker's `put_file` and the driver's wait for it forever. Every S3
filesystem e5ray makes carries `StoragePolicy`: botocore connect and read timeouts and
a bounded number of attempts with botocore's "standard" exponential backoff; s3fs's own
retry loop is set to one pass, so the two do not multiply. One call then fails within
`StoragePolicy.worst_case_s()` (about 2 minutes with the defaults) and the run ends with
one line naming the endpoint and what it was doing (`e5ray.store.failures`).

The read timeout alone does not bound a write: botocore sends `Expect: 100-continue` with
every PutObject and UploadPart body, and aiohttp waits for the server's "100 Continue"
outside its read timeout, so a PUT to a store that accepts connections and never answers
waited forever (measured: a 100-byte `pipe_file` with a 2 s read timeout still waiting
after 40 s; the hangs of the commit, the lease heartbeat and Ray actors in `put_file`).
`bound_every_call` drops that header on every S3 filesystem e5ray makes: the body is sent
at once and the read timeout then covers the wait for the answer (the same PUT failed in
8.3 s). The only cost: a PUT the server would refuse sends its body anyway.

`--deadline SECONDS` bounds the whole run: in the main thread an interval timer raises
`DeadlineExceeded` wherever the driver waits (fsspec and Ray wake up at least once a
second to check for signals); elsewhere the deadline is checked between steps.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from e5ray.errors import ConfigError, DeadlineExceeded

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 30.0
DEFAULT_ATTEMPTS = 3
_MAX_BACKOFF_S = 20.0  # botocore's standard retry mode caps each wait at 20 s


@dataclass(frozen=True)
class StoragePolicy:
    """How long one object-store call may wait, and how often it is tried."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout: float = DEFAULT_READ_TIMEOUT_S
    attempts: int = DEFAULT_ATTEMPTS

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError(
                f"S3 timeouts must be > 0 s, got connect {self.connect_timeout}, read {self.read_timeout} "
                "(--s3-connect-timeout, --s3-read-timeout)"
            )
        if self.attempts < 1:
            raise ConfigError(f"--s3-attempts must be >= 1, got {self.attempts}")

    def s3fs_options(self) -> dict[str, Any]:
        """Options for `s3fs.S3FileSystem` (merged into the storage options of S3 URIs)."""
        return {
            "config_kwargs": {
                "connect_timeout": self.connect_timeout,
                "read_timeout": self.read_timeout,
                "retries": {"max_attempts": self.attempts, "mode": "standard"},
            },
            "retries": 1,  # s3fs's loop: one pass; botocore does the bounded retrying
        }

    def worst_case_s(self) -> float:
        """An upper bound on how long one call to a store that stopped answering takes."""
        backoff = sum(min(2.0**i, _MAX_BACKOFF_S) for i in range(self.attempts - 1))
        return self.attempts * (self.connect_timeout + self.read_timeout) + backoff


def with_policy(options: dict[str, Any], policy: StoragePolicy | None = None) -> dict[str, Any]:
    """S3 storage options with the policy's timeouts where the caller set none."""
    out = dict(options)
    defaults = (policy or StoragePolicy()).s3fs_options()
    config = dict(defaults["config_kwargs"])
    config.update(out.get("config_kwargs") or {})
    out["config_kwargs"] = config
    out.setdefault("retries", defaults["retries"])
    return out


def _drop_expect_header(params: dict[str, Any], **_: Any) -> None:
    params.get("headers", {}).pop("Expect", None)


def bound_every_call(fs: Any) -> Any:
    """`fs` (an s3fs filesystem) with no `Expect: 100-continue` on its requests, so that the
    read timeout bounds writes too (see the module docstring). Idempotent; returns `fs`."""
    if getattr(fs, "_e5ray_bounded", False) or not hasattr(fs, "set_session"):
        return fs
    client = getattr(fs, "_s3", None)
    if client is not None:  # already connected: its own events
        client.meta.events.register_last("before-call.s3", _drop_expect_header)
    if getattr(fs, "session", None) is None:  # clients made later come from this session
        import aiobotocore.session

        fs.session = aiobotocore.session.AioSession(**getattr(fs, "kwargs", {}))
        fs._session_is_owned = True
    fs.session.get_component("event_emitter").register_last("before-call.s3", _drop_expect_header)
    fs._e5ray_bounded = True
    return fs


class Deadline:
    """The whole run's time limit; `step` says what the run is doing (for the error line)."""

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and seconds <= 0:
            raise ConfigError(f"--deadline must be > 0 seconds, got {seconds}")
        self.seconds = seconds
        self.ends = time.monotonic() + seconds if seconds else None
        self.step = "starting"

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"--deadline {self.seconds:g}s passed while {self.step}; nothing was committed "
            "(finished shards are kept and reused by the next run)"
        )

    def check(self, step: str | None = None) -> None:
        """Note the step the run enters; raise if the deadline has passed."""
        if step is not None:
            self.step = step
        if self.ends is not None and time.monotonic() > self.ends:
            raise self.error()

    @contextmanager
    def armed(self) -> Iterator[Deadline]:
        """While inside, a timer interrupts the main thread when the deadline passes."""
        if self.ends is None or threading.current_thread() is not threading.main_thread():
            yield self
            return

        def fire(signum: int, frame: FrameType | None) -> None:
            raise self.error()

        previous = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, max(0.001, self.ends - time.monotonic()))
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
