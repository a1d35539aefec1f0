"""Reading a config: YAML into a mapping, pydantic's errors into one line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from metaloop.config.schema import OPTIMIZEE_KINDS, ConfigDictT
from metaloop.errors import ConfigError


def _loc(loc: tuple[Any, ...]) -> str:
    """Dotted field path without pydantic's union tags: ``space.x.real.low`` -> ``space.x.low``."""
    parts = [str(p) for p in loc]
    if len(parts) > 2 and parts[0] == "space" and parts[2] in ("real", "int", "choice"):
        del parts[2]
    elif len(parts) > 1 and parts[0] == "optimizee" and parts[1] in OPTIMIZEE_KINDS:
        del parts[1]
    return ".".join(parts) or "config"


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per pydantic error: ``field.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        where = _loc(tuple(err["loc"]))
        if prefix:
            where = f"{prefix}.{where}" if where != "config" else prefix
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        lines.append(f"{where}: {msg}")
    return lines


def mapping_from_yaml(text: str, source: str = "") -> ConfigDictT:
    """The mapping a YAML (or JSON) text holds; ConfigError naming ``source`` (a file) if given,
    for bad YAML or a text that is not a mapping."""
    in_source = f" in {source}" if source else ""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config: YAML syntax error{in_source}{where}: {problem}") from None
    if not isinstance(data, dict):
        what = f"{source} must hold" if source else "must be"
        raise ConfigError(f"config: {what} a mapping of keys, got {type(data).__name__}")
    return data


def read_yaml(path: str | Path) -> ConfigDictT:
    """Read a YAML config file; ConfigError for a missing file or bad YAML."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: file not found: {p}")
    return mapping_from_yaml(p.read_text(), str(p))
