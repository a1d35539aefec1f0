"""metaloop: learning-to-learn two-loop optimization of expensive simulations."""

__version__ = "0.1.0"
