"""Train one model on one synthetic task; every setting is a Hydra override (conf/train.yaml).

python scripts/train.py model=rnn clip=1.0
python scripts/train.py model=rnn clip=null
python scripts/train.py -m model=rnn,lstm clip=null,1.0
"""

import hydra
from omegaconf import DictConfig

from src.config import CONF_DIR
from src.config.preflight import preflight
from src.launch import distributed_job_scope, single_run_argv_for_ddp_children
from src.train import train


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    single_run_argv_for_ddp_children()  # DDP ranks of a sweep job re-run this job only
    with distributed_job_scope():
        train(cfg)


if __name__ == "__main__":
    preflight()  # bad input: one line on stderr, exit 2, nothing written
    main()
