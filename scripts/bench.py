"""Benchmarks, each measured side by side in one run: ``python scripts/bench.py NAME [ARGS]``.

NAME is a module of src/bench/ (e.g. ``telemetry``; ``_``-prefixed modules are helpers); its ``main(argv)`` gets
ARGS and returns the exit code.
"""

import importlib
import pkgutil
import sys

import src.bench


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(src.bench.__path__) if not m.name.startswith("_"))
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print(f"usage: python scripts/bench.py {{{','.join(names)}}} [ARGS]", file=sys.stderr)
        return 2
    return importlib.import_module(f"src.bench.{sys.argv[1]}").main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
