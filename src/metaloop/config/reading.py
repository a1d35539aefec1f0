"""Reading a config: YAML into a mapping, pydantic's errors into one line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from metaloop.config.schema import OPTIMIZEE_KINDS, ConfigDictT
from metaloop.config.yamltext import load_yaml
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


def mapping_from_yaml(text: str | bytes, source: str = "") -> ConfigDictT:
    """The mapping a YAML (or JSON) text holds, read within bounds (:mod:`.yamltext`);
    ConfigError naming ``source`` (a file) if given, for bad YAML or a text that is not a
    mapping."""
    data = load_yaml(text, source)
    if not isinstance(data, dict):
        what = f"{source} must hold" if source else "must be"
        raise ConfigError(f"config: {what} a mapping of keys, got {type(data).__name__}")
    return data


def read_yaml(path: str | Path) -> ConfigDictT:
    """Read a YAML config file; ConfigError for a missing file, an unreadable one or bad YAML."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config: {p} is a directory; expected a YAML file")
    if not p.is_file():
        raise ConfigError(f"config: file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config: cannot read {p}: {exc.strerror or exc}") from None
    return mapping_from_yaml(data, str(p))
