"""`python -m e5ray.cli`: the same as the `e5ray` command."""

import sys

from e5ray.cli.app import main

sys.exit(main())
