"""The lock and the files that must follow it.

`constraints.txt` at the repository root is the lock: the exact version of every package
the suite passed with, for the Python and platform named in its header. The README's
install command and `.ci/run` install through it (`pip install -c constraints.txt ...`), so
a fresh clone gets what was tested; pyproject.toml keeps ranges for people who install
e5ray into an environment of their own.

Two other files name versions, and this script keeps them equal to the lock:
- `examples/runtime_env.yaml`: what every node of a cluster installs for a `ray job submit`;
- `cluster.yaml`: the Ray pin in the launcher's setup commands.

    python .ci/pins.py check     # exit 1, naming each pin that differs from the lock
    python .ci/pins.py sync      # rewrite those pins from the lock
    python .ci/pins.py freeze PYTHON OUT   # write a lock from PYTHON's environment
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "constraints.txt"
PINNED_FILES = (REPO / "examples" / "runtime_env.yaml", REPO / "cluster.yaml")
# `name[extras]==version`, as written in a YAML list item or a quoted pip argument.
PIN = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[A-Za-z0-9_,-]+\])?==(?P<version>[A-Za-z0-9.+!_-]+)"
)
HEADER = """\
# The lock: the exact versions the suite passed with (Python {python}, {platform}).
# Used by the README's install command and .ci/run: pip install -c constraints.txt -e ".[test]"
# Refresh it with .ci/upgrade-lock (newest releases, the whole suite, then a diff);
# examples/runtime_env.yaml and cluster.yaml follow it (.ci/pins.py sync|check).
"""


def normalise(name: str) -> str:
    """PEP 503: names compare case-insensitively, with runs of -_. as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Normalised package name -> locked version."""
    locked: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.fullmatch(line)
        if match is None:
            raise ValueError(f"{path.name}: not a 'name==version' line: {line!r}")
        locked[normalise(match["name"])] = match["version"]
    return locked


def pins_in(path: Path) -> list[tuple[str, str]]:
    """(normalised name, pinned version) for every `name==version` in a file."""
    return [(normalise(m["name"]), m["version"]) for m in PIN.finditer(path.read_text())]


def differences(lock: dict[str, str]) -> list[str]:
    """One line per pin that is not the locked version (or names an unlocked package)."""
    problems = []
    for path in PINNED_FILES:
        for name, version in pins_in(path):
            if lock.get(name) != version:
                want = lock.get(name, "not in the lock")
                problems.append(f"{path.relative_to(REPO)}: {name}=={version}, the lock has {want}")
    return problems


def sync(lock: dict[str, str]) -> None:
    for path in PINNED_FILES:
        text = path.read_text()

        def locked(m: re.Match[str]) -> str:
            version = lock.get(normalise(m["name"]), m["version"])
            return f"{m['name']}{m['extras'] or ''}=={version}"

        path.write_text(PIN.sub(locked, text))


def freeze(python: str, out: Path) -> None:
    """Write the lock from what `python`'s environment has installed (e5ray itself left out)."""
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable", "--exclude", "e5ray"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = sorted((ln for ln in frozen.splitlines() if PIN.fullmatch(ln)), key=lambda ln: normalise(ln.split("==")[0]))
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], check=True, capture_output=True, text=True
    ).stdout.strip()
    header = HEADER.format(python=version, platform=f"{platform.system().lower()} {platform.machine()}")
    out.write_text(header + "\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "freeze" and len(argv) == 3:
        freeze(argv[1], Path(argv[2]))
        return 0
    lock = read_lock()
    if command == "sync":
        sync(lock)
        return 0
    if command == "check":
        problems = differences(lock)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    print(f"usage: pins.py check | sync | freeze PYTHON OUT (got {argv!r})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
