"""`python -m e5ray.cli`: the same as the `e5ray` command."""

import sys

from e5ray.cli.main import main

sys.exit(main())
