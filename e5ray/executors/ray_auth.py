"""Token authentication as the cluster being joined says, not as local files suggest.

Ray 2.60 writes `~/.ray/auth_token` on every local run, so the presence of that file says
nothing about the cluster in RAY_ADDRESS. Before joining, `settle_auth_mode` asks the
cluster's GCS one unauthenticated question (`GetClusterId`, a few milliseconds): an answer
means the cluster runs without token authentication, UNAUTHENTICATED means it wants a
token. This process then uses that mode (RAY_AUTH_MODE, re-read by Ray as Ray itself does
when it enables tokens). Invariants:

- a setting that contradicts the cluster (RAY_AUTH_MODE=token against a cluster without
  authentication, RAY_AUTH_MODE=disabled or no token against one with it) is refused with
  one line naming RAY_AUTH_MODE and what to set, before Ray is started;
- with RAY_AUTH_MODE unset, the cluster's mode is used, and a token (RAY_AUTH_TOKEN,
  RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) is sent only to a cluster that wants one;
- when the cluster cannot be asked (a `ray://` address, no answer within the probe's
  timeout), nothing is changed and joining proceeds under its own deadline;
- the token itself is never printed, only where it comes from (`auth_setting`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from e5ray.errors import UsageError

PROBE_TIMEOUT_S = 5.0


class RayAuthMismatch(UsageError, RuntimeError):
    """This process's token settings contradict the cluster's; the message says what to set."""


def auth_setting(env: dict[str, str] | None = None, home: Path | None = None) -> str:
    """How this process would authenticate to Ray, in words (never the token itself)."""
    env = dict(os.environ) if env is None else env
    mode = env.get("RAY_AUTH_MODE")
    if env.get("RAY_AUTH_TOKEN"):
        token = "token from RAY_AUTH_TOKEN"
    elif env.get("RAY_AUTH_TOKEN_PATH"):
        token = f"token file {env['RAY_AUTH_TOKEN_PATH']} (RAY_AUTH_TOKEN_PATH)"
    elif ((home or Path.home()) / ".ray" / "auth_token").is_file():
        token = "token file ~/.ray/auth_token"
    else:
        token = "no token"
    return f"RAY_AUTH_MODE={mode or 'unset'}, {token}"


def cluster_auth_mode(gcs_address: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """'token' or 'disabled', as the GCS at host:port answers an unauthenticated call; None
    when it cannot be asked or does not answer within `timeout` s."""
    try:
        import grpc  # type: ignore[import-untyped]
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:  # another Ray layout: join as configured
        return None
    with grpc.insecure_channel(gcs_address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(getattr(gcs_service_pb2, "GetClusterIdRequest")(), timeout=timeout)  # noqa: B009 (generated, untyped)
        except grpc.RpcError as exc:
            return "token" if exc.code() == grpc.StatusCode.UNAUTHENTICATED else None
    return "disabled"


def auth_decision(address: str, cluster_mode: str, env: dict[str, str], home: Path | None = None) -> str:
    """The RAY_AUTH_MODE to join the cluster at `address` with, whose mode is `cluster_mode`;
    RayAuthMismatch (one line naming RAY_AUTH_MODE and what to set) when the settings contradict it."""
    setting = auth_setting(env, home)
    mode = (env.get("RAY_AUTH_MODE") or "").lower() or None
    where = f"the Ray cluster at {address} (RAY_ADDRESS)"
    if cluster_mode == "disabled":
        if mode == "token":
            raise RayAuthMismatch(
                f"{where} runs without token authentication, but this process has {setting}: "
                "unset RAY_AUTH_MODE or set RAY_AUTH_MODE=disabled to join it"
            )
        return "disabled"
    if mode == "disabled":
        raise RayAuthMismatch(
            f"{where} requires token authentication, but this process has {setting}: set RAY_AUTH_MODE=token "
            "and the cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token; `ray get-auth-token` on the head)"
        )
    if setting.endswith("no token"):
        raise RayAuthMismatch(
            f"{where} requires token authentication, but this process has {setting}: set RAY_AUTH_MODE=token "
            "and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the cluster's token (`ray get-auth-token` on the head)"
        )
    return "token"


def settle_auth_mode(address: str, gcs_address: str | None) -> None:
    """Use the auth mode of the cluster at `address` in this process (see the module's invariants)."""
    cluster_mode = cluster_auth_mode(gcs_address) if gcs_address else None
    if cluster_mode is None:
        return
    wanted = auth_decision(address, cluster_mode, dict(os.environ))
    if os.environ.get("RAY_AUTH_MODE", "").lower() == wanted:
        return
    os.environ["RAY_AUTH_MODE"] = wanted
    try:  # Ray reads its settings once, at import; re-read them as Ray itself does when it enables tokens
        importlib.import_module("ray._raylet").Config.initialize("")
    except (ImportError, AttributeError):  # another Ray version: the variable alone may do
        pass
