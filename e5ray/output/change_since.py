"""Which versions a change feed from version N needs, and the one-line refusal when it cannot be served.

A reader at version N is taken to the current version C by the change files of versions
N+1..C (each lists what it changed against the one before) and the vectors of the files C
holds that N did not. So it needs: the manifests N..C (N's for its space and file list, the
others for their change files), every one of N+1..C recording rows (not "replaced": the first
version, `--full`, a new space, or written before change files), and N's vectors in C's space.
`e5ray gc` removes a version's manifest and change file together, so a version it collected
cannot be served; the refusal names the oldest version that can (walking down from C while
each version lists rows and the one below is kept, in C's space).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from e5ray.errors import ChangesUnavailableError, UsageError
from e5ray.output.change_file import REPLACED, ROWS
from e5ray.output.manifest import Manifest
from e5ray.output.versions import list_versions, read_manifest, version_name
from e5ray.store.filesystem import OutputDir


@dataclass
class VersionChain:
    """The manifests from version `since` to the current one, once each is known to serve."""

    since: Manifest
    current: Manifest
    between: list[Manifest] = field(default_factory=list)  # since+1 .. current, in order


def resolve_since(output: OutputDir, since: int, current: Manifest | None = None) -> VersionChain:
    """The chain from `since` to the newest version; ChangesUnavailableError (one line) when
    it cannot be served, UsageError when `since` is not a version at all. `current`: the
    newest manifest when the caller has read it (used only while it is still the newest)."""
    versions = list_versions(output)
    if not versions:
        raise UsageError(f"{output.uri} has no committed version: not an e5ray output, or no run has committed yet")
    current_number = versions[-1]
    if not 1 <= since <= current_number:
        raise UsageError(
            f"--since {since}: {output.uri} has versions 1..{current_number} (kept: {_span(versions)}); "
            f"give one of them"
        )
    cache: dict[int, Manifest] = {current.version: current} if current and current.version == current_number else {}

    def load(number: int) -> Manifest:
        if number not in cache:
            cache[number] = read_manifest(output, version_name(number))
        return cache[number]

    newest = load(current_number)
    why = _why_not(since, versions, load, newest)
    if why is not None:
        oldest = _oldest_servable(versions, load, newest)
        raise ChangesUnavailableError(
            f"{output.uri}: no changes since version {since}: {why}; the oldest version it can serve is "
            f"{oldest} (a reader at an older version reads version {current_number} whole)"
        )
    return VersionChain(load(since), newest, [load(n) for n in range(since + 1, current_number + 1)])


def _why_not(since: int, versions: list[int], load: Callable[[int], Manifest], current: Manifest) -> str | None:
    kept = set(versions)
    if since not in kept:
        return f"gc removed version {since} (kept: {_span(versions)})"
    if load(since).space.fingerprint != current.space.fingerprint:
        return (
            f"version {since}'s vectors are in another space ({load(since).space.fingerprint[:12]}, "
            f"now {current.space.fingerprint[:12]})"
        )
    for number in range(since + 1, current.version + 1):
        if number not in kept:
            return f"gc removed version {number} (kept: {_span(versions)})"
        reason = _not_rows(load(number))
        if reason is not None:
            return f"version {number} {reason}"
    return None


def _not_rows(manifest: Manifest) -> str | None:
    """Why `manifest` does not list its row changes; None when it does."""
    ref = manifest.row_changes
    if ref is None:
        return "was written before change files existed"
    if ref.get("mode") == REPLACED:
        return f"replaced everything ({ref.get('reason')})"
    if ref.get("mode") != ROWS:
        return f"records row changes as {ref.get('mode')!r}, not one of {[ROWS, REPLACED]}"
    return None


def _oldest_servable(versions: list[int], load: Callable[[int], Manifest], current: Manifest) -> int:
    kept, oldest = set(versions), current.version
    while (
        oldest - 1 in kept
        and _not_rows(load(oldest)) is None
        and load(oldest - 1).space.fingerprint == current.space.fingerprint
    ):
        oldest -= 1
    return oldest


def _span(versions: list[int]) -> str:
    return f"{versions[0]}..{versions[-1]}" if len(versions) > 1 else str(versions[0])
