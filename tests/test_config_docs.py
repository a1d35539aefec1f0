"""Every key of the config schema is documented in docs/config.md (a key added to
src/metaloop/config/schema.py without a line there fails here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metaloop.config.schema import (
    DurationSpec,
    EarlyStoppingSpec,
    ExecutorSpec,
    ExperimentConfig,
)

DOC = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
#: keys of a table row: "| `key` | ..." at the start of a line
ROW_KEYS = set(re.findall(r"^\| `([a-z_]+)` \|", DOC, re.M))
#: every key mentioned in backticks (for specs documented inside one row)
MENTIONED = set(re.findall(r"`([a-z_]+)(?::[^`]*)?`", DOC))


@pytest.mark.parametrize("spec", [ExperimentConfig, ExecutorSpec], ids=lambda s: s.__name__)
def test_every_key_has_a_row_in_config_md(spec):
    missing = sorted(set(spec.model_fields) - ROW_KEYS)
    assert not missing, f"docs/config.md has no row for {spec.__name__} keys {missing}"


@pytest.mark.parametrize("spec", [EarlyStoppingSpec, DurationSpec], ids=lambda s: s.__name__)
def test_every_nested_key_is_named_in_config_md(spec):
    missing = sorted(set(spec.model_fields) - MENTIONED)
    assert not missing, f"docs/config.md never names {spec.__name__} keys {missing}"
