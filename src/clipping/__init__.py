"""Gradient clipping rules beyond Lightning's norm/value clipping, one config switch each (conf/clipping/)."""

from src.clipping.agc import AdaptiveGradClip
from src.clipping.autoclip import AutoClip
from src.clipping.base import ClipRule
from src.clipping.layerwise import LayerwiseNormClip
from src.clipping.norm import GlobalNormClip, ValueClip
from src.clipping.penalty import GradNormPenalty
from src.clipping.zclip import ZClip

__all__ = [
    "AdaptiveGradClip",
    "AutoClip",
    "ClipRule",
    "GlobalNormClip",
    "GradNormPenalty",
    "LayerwiseNormClip",
    "ValueClip",
    "ZClip",
]
