"""One whole `e5ray embed --json` process from one source tree: the run and its actors import e5ray from
TREE (PYTHONPATH, and the working directory, which Ray's workers put first on their sys.path). BENCHMARKS.md, start-up.

    python bench-results/startup-tree-child.py TREE EMBED-ARGS...

With `startup-side-by-side.py`, the variant is the tree: `git archive <commit> | tar -x -C DIR` for the
code before a change, the worktree for after.
"""

import os
import sys

tree, args = sys.argv[1], sys.argv[2:]
env = {**os.environ, "PYTHONPATH": tree}
os.chdir(tree)  # Ray puts the driver's working directory first on its workers' sys.path: the actors too import TREE
os.execve(sys.executable, [sys.executable, "-m", "e5ray.cli", "embed", *args, "--json", "--progress", "off"], env)
