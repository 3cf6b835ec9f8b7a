"""Which of the seed article's exploding-gradient symptoms does a finished run show?

python scripts/diagnose.py outputs/<date>/<run dir>
"""

import argparse
import sys
from pathlib import Path

from src.analysis.diagnosis import diagnose, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories (with summary.json)")
    args = parser.parse_args()
    for run_dir in args.run_dirs:
        if not (run_dir / "summary.json").exists():
            print(f"error: {run_dir} has no summary.json (not a finished gradlab run)", file=sys.stderr)
            sys.exit(2)
        print(report(diagnose(run_dir)))


if __name__ == "__main__":
    main()
