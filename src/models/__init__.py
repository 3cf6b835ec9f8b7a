from src.models.chain import ScalarChain
from src.models.mlp import MLP
from src.models.module import GradLabModule
from src.models.recurrent import RecurrentNet

__all__ = ["MLP", "GradLabModule", "RecurrentNet", "ScalarChain"]
