"""Run the reproduction suite and regenerate docs/results.md and docs/img/*.png from the runs.

make reproduce                                   # every experiment, quick scale, 2 at a time (< 45 min on 2 cores)
make reproduce ARGS='--scale paper'              # the configs as written in conf/experiment/
make reproduce ARGS='--only seed_chain,clip_sweep'
make reproduce ARGS='--report-only outputs/reproduce/<stamp>'   # rebuild the report from existing runs
python scripts/reproduce.py --only recurrent_adding -- data.batch_size=32   # extra overrides after --
"""

import argparse
import sys
import time
from pathlib import Path

from src.analysis.report import build_report
from src.reproduce import BY_NAME, EXPERIMENTS, REPO, run_suite


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["quick", "paper"], default="quick")
    parser.add_argument("--only", default="", help="comma-separated experiment names (default: all)")
    parser.add_argument(
        "--root", type=Path, default=None, help="where the multiruns go (default: outputs/reproduce/<stamp>)"
    )
    parser.add_argument(
        "--report-only", type=Path, default=None, metavar="ROOT", help="skip the runs; report from ROOT"
    )
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every run (see src/reproduce.py)")
    parser.add_argument("--jobs", type=int, default=2, help="experiments run at a time (one per core)")
    return parser.parse_args(argv), extra


def main(argv: list[str]) -> int:
    args, extra = parse(argv)
    names = [n for n in args.only.split(",") if n] or [e.name for e in EXPERIMENTS]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(f"error: unknown experiment(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    root = args.report_only or args.root or REPO / "outputs" / "reproduce" / time.strftime("%Y-%m-%d_%H-%M-%S")
    if args.report_only is None:
        run_suite([BY_NAME[n] for n in names], root, args.scale, extra, args.threads, args.jobs)
    report = build_report(root, args.docs)
    print(f"[reproduce] report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
