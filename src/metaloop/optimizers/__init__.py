"""Outer-loop optimizers (one module per algorithm) and their registry."""

from metaloop.optimizers.base import Optimizer, OptimizerParams
from metaloop.optimizers.registry import get_optimizer_class, optimizer_kinds
from metaloop.scoring import scalarize

__all__ = ["Optimizer", "OptimizerParams", "get_optimizer_class", "optimizer_kinds", "scalarize"]
