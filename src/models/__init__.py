from src.models.chain import ScalarChain
from src.models.mlp import MLP
from src.models.module import GradLabModule
from src.models.recurrent import RecurrentNet
from src.models.transformer import Transformer

__all__ = ["MLP", "GradLabModule", "RecurrentNet", "ScalarChain", "Transformer"]
