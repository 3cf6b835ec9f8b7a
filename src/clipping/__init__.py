"""Gradient clipping: where it is applied (apply.py) and the rules Lightning lacks (conf/clipping/).

Lightning's own norm and value clipping are the top-level ``clip`` / ``clip_algorithm`` keys.
"""

from src.clipping.agc import AdaptiveGradClip
from src.clipping.apply import ClipReport, ReportsClipping, clip_gradients
from src.clipping.autoclip import AutoClip
from src.clipping.base import Clipped, ClipRule
from src.clipping.layerwise import LayerwiseNormClip
from src.clipping.zclip import ZClip

__all__ = [
    "AdaptiveGradClip",
    "AutoClip",
    "ClipReport",
    "ClipRule",
    "Clipped",
    "LayerwiseNormClip",
    "ReportsClipping",
    "ZClip",
    "clip_gradients",
]
