"""Lightning callbacks for gradient telemetry and divergence handling, reusable in any Lightning project.

The monitors share one logging schedule (schedule.py) and one computation of the step's gradient norms
(src/grad_norms.py); callbacks hand totals to the run summary through ``RunTotals`` (run_totals.py). A run
passes them to its Trainer in one ``CallbackGroup`` (group.py), which Lightning dispatches once per hook.
"""

from src.callbacks.activations import ActivationMonitor
from src.callbacks.attention import AttentionMonitor
from src.callbacks.checkpoint import FiniteModelCheckpoint
from src.callbacks.divergence import DivergenceGuard
from src.callbacks.grad_norm import GradNormMonitor
from src.callbacks.group import CallbackGroup
from src.callbacks.histograms import HistogramMonitor
from src.callbacks.precision import GradScalerMonitor
from src.callbacks.preemption import PreemptionSync
from src.callbacks.progress_bar import PacedRichProgressBar
from src.callbacks.run_totals import RunTotals, collect_run_totals
from src.callbacks.schedule import Monitor
from src.callbacks.through_time import ThroughTimeMonitor
from src.callbacks.throughput import ThroughputLogger
from src.callbacks.wandb_run_id import WandbRunId
from src.callbacks.weights import WeightMonitor

__all__ = [
    "ActivationMonitor",
    "AttentionMonitor",
    "CallbackGroup",
    "DivergenceGuard",
    "FiniteModelCheckpoint",
    "GradNormMonitor",
    "GradScalerMonitor",
    "HistogramMonitor",
    "Monitor",
    "PacedRichProgressBar",
    "PreemptionSync",
    "RunTotals",
    "ThroughTimeMonitor",
    "ThroughputLogger",
    "WandbRunId",
    "WeightMonitor",
    "collect_run_totals",
]
