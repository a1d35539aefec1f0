"""The experiment config: one validated schema, every error one line naming the field.

Validation covers everything a run needs before the store is touched: the YAML itself, every
key and type, the optimizer's hyperparameters (its own schema), the optimizee's target (the
file and the function exist), the parameter space, and the storage URL — and reports every
problem in one go.  :mod:`.schema` holds the sections, :mod:`.reading` the YAML and the
error lines, :mod:`.resolve` what needs optimizees, optimizers and the store.
"""

from metaloop.config.reading import format_validation_error, read_yaml
from metaloop.config.resolve import Config, load_config, validate_config
from metaloop.config.schema import (
    EarlyStoppingSpec,
    ExecutorSpec,
    ExperimentConfig,
)
from metaloop.errors import ConfigError

__all__ = [
    "Config",
    "ConfigError",
    "EarlyStoppingSpec",
    "ExecutorSpec",
    "ExperimentConfig",
    "format_validation_error",
    "load_config",
    "read_yaml",
    "validate_config",
]
