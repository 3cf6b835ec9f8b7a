"""Lightning callbacks for gradient telemetry and divergence handling, reusable in any Lightning project."""

from src.callbacks.activations import ActivationMonitor
from src.callbacks.attention import AttentionMonitor
from src.callbacks.checkpoint import FiniteModelCheckpoint
from src.callbacks.divergence import DivergenceGuard
from src.callbacks.grad_norm import GradNormMonitor
from src.callbacks.histograms import HistogramMonitor
from src.callbacks.precision import GradScalerMonitor
from src.callbacks.preemption import PreemptionSync
from src.callbacks.through_time import ThroughTimeMonitor
from src.callbacks.throughput import ThroughputLogger
from src.callbacks.wandb_run_id import WandbRunId
from src.callbacks.weights import WeightMonitor

__all__ = [
    "ActivationMonitor",
    "AttentionMonitor",
    "DivergenceGuard",
    "FiniteModelCheckpoint",
    "GradNormMonitor",
    "GradScalerMonitor",
    "HistogramMonitor",
    "PreemptionSync",
    "ThroughTimeMonitor",
    "ThroughputLogger",
    "WandbRunId",
    "WeightMonitor",
]
