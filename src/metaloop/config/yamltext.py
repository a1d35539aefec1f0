"""YAML read within bounds: a config is small, so anything that would make it large is refused
before a single Python object is built.

PyYAML builds an alias as a shared reference, so a "billion laughs" document costs little to
load, but everything that walks it afterwards (validation, storing the config as JSON)
expands every alias: nine levels of ten aliases is a billion nodes.  The composed node graph
is walked once (iteratively, so deep nesting cannot overflow Python's stack) and its size
*with aliases expanded*, its depth, recursive aliases and duplicate mapping keys are checked
first; only then are objects constructed.
"""

from __future__ import annotations

from typing import Any

import yaml

from metaloop.errors import ConfigError

#: the most bytes a config text may have
MAX_BYTES = 10 * 1024 * 1024
#: the most nodes (scalars, lists, mappings) a config may hold with its aliases expanded
MAX_NODES = 1_000_000
#: the deepest nesting of lists and mappings
MAX_DEPTH = 64

try:  # libyaml when present: the same document, the same errors, faster
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


def _where(node: yaml.Node) -> str:
    mark = node.start_mark
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _check_graph(root: yaml.Node, prefix: str) -> None:
    """Refuse recursive aliases, duplicate keys, nesting deeper than MAX_DEPTH and more than
    MAX_NODES nodes with aliases expanded (each distinct node is visited once)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            active.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if depth[key] > MAX_DEPTH:
                raise ConfigError(
                    f"{prefix}: nested deeper than {MAX_DEPTH} levels{_where(node)}"
                )
            if size[key] > MAX_NODES:
                raise ConfigError(
                    f"{prefix}: holds more than {MAX_NODES:,} values once its aliases are "
                    f"expanded (an alias bomb?){_where(node)}"
                )
            continue
        if key in size:
            continue
        if key in active:
            raise ConfigError(f"{prefix}: an alias refers to itself (recursive){_where(node)}")
        if len(active) >= MAX_DEPTH:
            raise ConfigError(f"{prefix}: nested deeper than {MAX_DEPTH} levels{_where(node)}")
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(node, prefix)
        active.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _no_duplicate_keys(node: yaml.MappingNode, prefix: str) -> None:
    seen: set[tuple[str, str]] = set()
    for key_node, _value in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        ident = (key_node.tag, key_node.value)
        if ident in seen:
            raise ConfigError(
                f"{prefix}: duplicate key {key_node.value!r}{_where(key_node)} (each key once)"
            )
        seen.add(ident)


def load_yaml(text: str | bytes, source: str = "") -> Any:
    """The data a YAML (or JSON) text holds, within the bounds above; ConfigError naming
    ``source`` (a file) if given, in one line, for text that is not UTF-8, too large, not
    YAML, or out of bounds."""
    in_source = f" in {source}" if source else ""
    prefix = f"config{in_source}" if source else "config"
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise ConfigError(f"{prefix}: larger than {MAX_BYTES // 2**20} MiB")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            bad = text[exc.start : exc.start + 1].hex()
            raise ConfigError(
                f"{prefix}: not UTF-8 text (byte 0x{bad} at offset {exc.start}); save it as UTF-8"
            ) from None
    elif len(text) > MAX_BYTES:
        raise ConfigError(f"{prefix}: larger than {MAX_BYTES // 2**20} MiB")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, prefix)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config: YAML syntax error{in_source}{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{prefix}: nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
