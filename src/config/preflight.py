"""Check the command line before Hydra creates a run directory.

``@hydra.main`` makes the output directory before the task function runs, so a range error found there would
leave an empty run behind, and Hydra's own composition errors span several lines. ``preflight`` composes
the same config(s) with the Compose API first — every job of a ``-m`` sweep, including sweeps an experiment
declares under ``hydra.sweeper.params`` — validates each (schema, ranges, keys, every object built once),
builds its Trainer (against this machine's hardware when the job runs here), checks ``ckpt_path`` and that
the job's run directory holds no earlier run, and exits with one line on stderr on bad input.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from src.config import CONF_DIR, register
from src.config.resume import check_checkpoint, check_run_dir
from src.config.search_space import job_overrides
from src.config.validate import RANGES, ConfigError, validate

EXIT_BAD_INPUT = 2
_PASS_THROUGH = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc"}
# launchers that run the jobs in this process or on this machine: the Trainer is checked against its hardware
_LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "LocalLauncher")


# OmegaConf's type and enum messages, in the words of the rest of gradlab's errors
_OMEGACONF_REASONS = [
    (r"^Invalid value '[^']*', expected", "expected"),
    (r"^Value '[^']*' of type '\w+' could not be converted to Float", "expected a number"),
    (r"^Value '[^']*' of type '\w+' could not be converted to Integer", "expected an integer"),
    (r"^Value '[^']*' is not a valid bool.*", "expected true or false"),
]


def _job_overrides(args: Sequence[str], config_name: str) -> list[list[str]]:
    """The override list of every job this command line would run."""
    multirun = "-m" in args or "--multirun" in args
    overrides = [a for a in args if not a.startswith("-")]
    if not multirun:
        return [overrides]
    sweep_params: dict[str, str] = {}
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        base = compose(config_name, overrides=[o for o in overrides if "," not in o], return_hydra_config=True)
        params = OmegaConf.select(base, "hydra.sweeper.params") or {}
        sweep_params = {str(k): str(v) for k, v in params.items()}
        sweeper = str(OmegaConf.select(base, "hydra.sweeper._target_") or "")
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    merged = [f"{k}={v}" for k, v in sweep_params.items() if k not in given] + overrides
    parsed = OverridesParser.create().parse_overrides(merged)
    # a search sweeper (Optuna) samples interval(...)/range(...): its jobs are the edges of the search space
    return job_overrides(parsed, search=not sweeper.endswith("BasicSweeper"))


def _explain(err: Exception) -> str:
    """Hydra's and OmegaConf's multi-line errors, reduced to one line naming the key and what is allowed."""
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, choice = str(err.missing_cfg_file).rpartition("/")
        if group == "hydra/launcher" and choice.startswith("submitit_"):  # conf/hydra/launcher/slurm.yaml's base
            return "hydra/launcher=slurm needs the optional hydra-submitit-launcher: pip install -e '.[cluster]'"
        if group == "hydra/sweeper" and choice == "optuna":  # conf/hydra/sweeper/optuna_tpe.yaml's base
            return "hydra/sweeper=optuna_tpe needs the optional hydra-optuna-sweeper: pip install -e '.[sweep]'"
        options = sorted(o for o in (err.options or []) if o != "base") or []
        if group:
            return f"{group}={choice} is not a known option; expected one of: {', '.join(options)}"
    text = " ".join(str(err).split())
    merging = re.match(r"Error merging override (\S+?)=(.*)$", text)
    if merging and err.__cause__ is not None:  # a type or enum mismatch: OmegaConf's reason is the cause
        key, value = merging.groups()
        reason = str(err.__cause__).splitlines()[0]
        for pattern, plain in _OMEGACONF_REASONS:
            reason = re.sub(pattern, plain, reason)
        if key in RANGES:
            reason = f"expected {RANGES[key][1]}"
        return f"{key}={value} is not allowed; {reason}"
    missing = re.search(r"Key '([^']+)' (?:is not in struct|not in '\w+')", text)
    override = re.search(r"Could not (?:override|append to) '([^']+)'", text)
    if missing or (override and "To append" in text):
        key = override.group(1) if override else missing.group(1)  # type: ignore[union-attr]
        parent, _, leaf = key.rpartition(".")
        hint = ""
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            base = compose("train")
        siblings = OmegaConf.select(base, parent) if parent else base
        if siblings is not None and hasattr(siblings, "keys"):
            close = difflib.get_close_matches(leaf, [str(k) for k in siblings], n=1)
            hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
        return f"{key} is not a known key{hint}; run with --cfg job to list the keys"
    return text.replace("full_key: ", "key ").split(" Set the environment variable")[0]


def _job_checks(cfg: DictConfig, multirun: bool) -> None:
    """What needs the machine or the filesystem: the Trainer, ``ckpt_path`` and the run directory."""
    from src.config.objects import check_trainer  # imports Lightning: only once validate() has passed

    launcher = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    check_trainer(cfg, runs_here=not multirun or launcher.rsplit(".", 1)[-1] in _LOCAL_LAUNCHERS)
    check_checkpoint(cfg)
    if multirun:
        run_dir, key = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir), "hydra.sweep.dir"
    else:
        run_dir, key = Path(cfg.hydra.run.dir), "hydra.run.dir"
    check_run_dir(run_dir, bool(cfg.overwrite), key)


def check(args: Sequence[str], config_name: str = "train") -> None:
    """Raise ConfigError if any job of this command line has bad input."""
    register()
    GlobalHydra.instance().clear()
    multirun = "-m" in args or "--multirun" in args
    try:
        for num, overrides in enumerate(_job_overrides(args, config_name)):
            with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
                cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            with open_dict(cfg):
                cfg.hydra.runtime.output_dir = "<preflight>"
                cfg.hydra.job.num = num  # a sweep's job directories are numbered in this order
            HydraConfig.instance().set_config(cfg)
            OmegaConf.to_container(cfg, resolve=True)  # every interpolation must resolve
            validate(cfg)
            _job_checks(cfg, multirun)
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise ConfigError(_explain(err)) from None
    finally:
        GlobalHydra.instance().clear()


def preflight(args: Sequence[str] | None = None, config_name: str = "train") -> None:
    """Exit with status 2 and a one-line message on bad input; return silently otherwise."""
    args = list(sys.argv[1:] if args is None else args)
    if any(a in _PASS_THROUGH or a.startswith(("--config", "-cp", "-cn", "--cfg")) for a in args):
        return  # Hydra's own informational and config-path flags: let Hydra handle them
    try:
        check(args, config_name)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
