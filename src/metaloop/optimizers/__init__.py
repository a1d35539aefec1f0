"""Outer-loop optimizers (one module per algorithm) and their registry."""

from metaloop.optimizers.base import Optimizer, OptimizerParams, scalarize
from metaloop.optimizers.registry import get_optimizer_class, optimizer_kinds

__all__ = ["Optimizer", "OptimizerParams", "get_optimizer_class", "optimizer_kinds", "scalarize"]
