"""Everything only a GPU shows, in one call: ``python scripts/gpu_check.py --out DIR`` (``make gpu-check``).

Without CUDA (or with --dry-run) the GPU parts skip and the rest runs at a tiny size. See src/gpu_check/.
On a machine where gradlab is not pip-installed, run it from the repository root with PYTHONPATH=. (the
Makefile target does).
"""

import sys

from src.gpu_check.main import main

if __name__ == "__main__":
    sys.exit(main())
