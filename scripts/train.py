"""Train one model on one synthetic task; every setting is a Hydra override (conf/train.yaml).

python scripts/train.py model=rnn clip=1.0
python scripts/train.py model=rnn clip=null
python scripts/train.py -m model=rnn,lstm clip=null,1.0
python scripts/train.py -m experiment=rnn_clip_lr_search     # an Optuna search over clip and lr

The job returns its objective (final val/loss; +inf for a diverged run) for search sweepers.
"""

import sys

import hydra
from omegaconf import DictConfig

from src.config import CONF_DIR, register
from src.config.preflight import preflight
from src.quiet import quiet_third_party


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    # torch and Lightning come in here, after the pre-flight: a typo is refused without waiting for them
    from src.launch import distributed_job_scope, single_run_argv_for_ddp_children
    from src.preemption import exit_status
    from src.sweep import objective
    from src.train import train

    register()  # also in a launcher's job process, which resolves the config again
    single_run_argv_for_ddp_children()  # DDP ranks of a sweep job re-run this job only
    with distributed_job_scope():
        summary = train(cfg)
    if exit_status(summary):  # SIGTERM: last.ckpt and summary.json written; exit 143 so the scheduler sees it
        sys.exit(exit_status(summary))
    return objective(summary)


if __name__ == "__main__":
    register()  # schemas and resolvers, before Hydra composes anything
    quiet_third_party()  # Lightning's tips and third-party deprecations, not the user's business
    preflight()  # bad input: one line on stderr, exit 2, nothing written
    main()
