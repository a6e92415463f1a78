"""`python -m e5ray.testing DIR`: write a random-weight demo model (no downloads)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from e5ray.testing.archs import ARCHS
from e5ray.testing.shapes import SHAPES


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e5ray.testing", description="write a random-weight E5-like encoder (for demos and tests only)"
    )
    parser.add_argument("directory")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="bert")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from e5ray.testing.models import write_test_model  # needs onnx: imported after --help works

    path = write_test_model(args.directory, arch=args.arch, shape=args.shape, seed=args.seed)
    print(f"wrote a random-weight {args.arch} encoder of shape {args.shape} to {path} (for demos and tests only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
