"""``make gpu-check``: everything in gradlab that only a GPU shows, in one call that fits a short GPU lease.

``python scripts/gpu_check.py --out DIR`` runs, within ``--budget`` seconds: the ``gpu`` tests (pytest -m gpu)
beside the paper-scale recurrent runs (parallel processes, ``trainer.max_time`` bounded), then the loop,
telemetry and guard benchmarks on the GPU; it writes at most 7 files into DIR and prints a short table last.
Without CUDA (or with ``--dry-run``) every GPU part skips and says so, and the rest runs at a tiny size on the
CPU so the plumbing is proven. Modules: bootstrap (the packages a bare GPU image lacks), paper (the published
runs), main (the parts, the budget, the table).
"""
