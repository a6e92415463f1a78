"""One `e5ray embed --json` run; prints its start-up timeline (BENCHMARKS.md, start-up).

    PYTHONPATH=$PWD python bench-results/startup-prestart-child.py product|prestart|noprestart EMBED-ARGS...

`prestart` restores Ray's default (one prestarted Python worker per CPU) by overriding the
`_system_config` the product passes; `noprestart` passes the product's setting explicitly
(what the side-by-side runs used, before the product adopted it); `product` changes nothing.
"""

import contextlib
import io
import json
import sys

import ray

import e5ray.cli.app as cli

variant = sys.argv[1]
real_init = ray.init


def init(*args, **kwargs):
    if variant == "prestart":
        kwargs["_system_config"] = {}
    elif variant == "noprestart":
        kwargs["_system_config"] = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}
    return real_init(*args, **kwargs)


ray.init = init
out = io.StringIO()
with contextlib.redirect_stdout(out):
    cli.main(["embed", *sys.argv[2:], "--json", "--progress", "off"])
summary = json.loads(out.getvalue().strip().splitlines()[-1])
print(json.dumps({"variant": variant, "startup": summary["startup"]}))
