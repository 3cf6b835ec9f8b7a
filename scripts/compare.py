"""Compare runs side by side from their local files — no W&B account needed.

python scripts/compare.py outputs/<date>/<run A> outputs/<date>/<run B> [--out compare/]
python scripts/compare.py multirun/<date>/<time>_<id>            # every job of a sweep
python scripts/compare.py --wandb ENTITY/PROJECT --group G        # the same from W&B (online)
"""

import argparse
import sys
from pathlib import Path

from src.analysis.compare import compare, markdown, table_rows
from src.analysis.runs import collect, from_wandb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="run directories or multirun directories")
    parser.add_argument("--out", type=Path, default=Path("compare"), help="where the PNGs and tables go")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from W&B instead of local files")
    parser.add_argument("--group", help="the W&B group to compare (with --wandb)")
    args = parser.parse_args()
    if args.wandb and not args.group:
        parser.error("--wandb needs --group")
    runs = from_wandb(args.wandb, args.group) if args.wandb else collect(args.paths)
    if not runs:
        print("error: no finished runs (directories with summary.json) found in the given paths", file=sys.stderr)
        return 2
    written = compare(runs, args.out)
    print(markdown(table_rows(runs)))
    print("\nwritten: " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
