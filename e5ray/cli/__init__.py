"""The command line: `e5ray embed|refresh|verify|gc|eval|compare|search|export|...`, its
flags (each default read from `e5ray.config`), config files, the summary and quiet logging.

The top layer: may import everything in the library; nothing imports it.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The `e5ray` command (`e5ray.cli.app.main`), imported only when it runs: a package
    import stays free of the CLI's own imports."""
    from e5ray.cli.app import main as run

    return run(argv)
