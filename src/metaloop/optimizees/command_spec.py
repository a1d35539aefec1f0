"""The ``command`` optimizee kind's config check: placeholders name parameters, the program
exists, paths are made absolute (the program runs in the evaluation's private directory)."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from string import Formatter
from typing import Any

from metaloop.errors import ConfigError
from metaloop.optimizees.command import CommandOptimizee
from metaloop.optimizees.kinds import CheckedSpec, OptimizeeKind, SpecCheck
from metaloop.optimizees.target import OptimizeeLoadError

RESERVED = ("params", "workdir")


# -- validation (at config time, before anything is written) ------------------------------------
def _placeholders(text: str, where: str) -> list[str]:
    """Field names of ``{...}`` in ``text`` (``{{``/``}}`` are literal braces)."""
    try:
        parsed = list(Formatter().parse(text))
    except ValueError as exc:
        raise OptimizeeLoadError(
            f"{where}: {exc} in {text!r} (write a literal brace as '{{{{' or '}}}}')"
        ) from None
    names = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field == "":
            raise OptimizeeLoadError(f"{where}: empty placeholder '{{}}' in {text!r}")
        if spec or conversion:
            raise OptimizeeLoadError(
                f"{where}: format specs are not supported in {text!r} "
                "(values are substituted at full precision)"
            )
        names.append(field)
    return names


def _check_names(names: list[str], where: str, space_names: list[str], allowed: tuple) -> None:
    for name in names:
        if name in allowed and name in space_names:
            raise OptimizeeLoadError(
                f"{where}: {{{name}}} is ambiguous: a parameter is also named {name!r}; "
                "rename the parameter"
            )
        if name not in allowed and name not in space_names:
            expected = ", ".join(
                [*(f"{{{n}}}" for n in space_names), *(f"{{{a}}}" for a in allowed)]
            )
            raise OptimizeeLoadError(
                f"{where}: unknown placeholder {{{name}}}; expected one of {expected}"
            )


def _resolve_program(name: str, base_dir: Path, where: str, path_env: str | None) -> str:
    """A program path with '/' becomes absolute (relative to ``base_dir``) and must be an
    executable file; a bare name must be found on PATH (and stays bare)."""
    if "/" not in name:
        if shutil.which(name, path=path_env) is None:
            raise OptimizeeLoadError(f"{where}: program {name!r} not found on PATH")
        return name
    path = Path(os.path.abspath(base_dir / os.path.expanduser(name)))
    if not path.exists():
        raise OptimizeeLoadError(f"{where}: program not found: {path}")
    if not path.is_file():
        raise OptimizeeLoadError(f"{where}: not a file: {path}")
    if not os.access(path, os.X_OK):
        raise OptimizeeLoadError(
            f"{where}: {path} is not executable (chmod +x it, or name its interpreter "
            "first, e.g. argv: [python3, script.py, ...])"
        )
    return str(path)


def check_command(spec: Any, base_dir: Path, space_names: list[str]) -> Any:
    """Check a ``CommandOptimizeeSpec`` and return it resolved (absolute program path,
    launcher as a list); OptimizeeLoadError with one line naming the field otherwise.

    Besides ``argv[0]``, an ``argv`` item without placeholders that names an existing file
    relative to ``base_dir`` (``[python3, sim.py]``) is made absolute, because the program
    runs in the evaluation's private directory.
    """
    base_dir = Path(base_dir)
    path_env = spec.env.get("PATH")
    argv = list(spec.argv)
    for i, item in enumerate(argv):
        names = _placeholders(item, f"optimizee.argv[{i}]")
        if i == 0 and names:
            raise OptimizeeLoadError(
                f"optimizee.argv[0]: the program cannot hold placeholders, got {item!r}"
            )
        _check_names(names, f"optimizee.argv[{i}]", space_names, RESERVED)
    if not argv[0].strip():
        raise OptimizeeLoadError("optimizee.argv[0]: the program is empty")
    argv[0] = _resolve_program(argv[0], base_dir, "optimizee.argv[0]", path_env)
    for i in range(1, len(argv)):
        item = argv[i]
        if item and "{" not in item and not item.startswith("-") and not os.path.isabs(item):
            candidate = base_dir / item
            if candidate.is_file():
                argv[i] = os.path.abspath(candidate)

    launcher = spec.launcher
    if isinstance(launcher, str):
        try:
            launcher = shlex.split(launcher)
        except ValueError as exc:
            raise OptimizeeLoadError(f"optimizee.launcher: {exc} in {spec.launcher!r}") from None
    launcher = list(launcher or [])
    if launcher:
        launcher[0] = _resolve_program(launcher[0], base_dir, "optimizee.launcher", path_env)

    result_file = spec.result_file
    if result_file is not None:
        if not result_file.strip():
            raise OptimizeeLoadError("optimizee.result_file: must not be empty")
        if os.path.isabs(result_file) or result_file.startswith("~"):
            raise OptimizeeLoadError(
                f"optimizee.result_file: must be relative to the evaluation's workdir, "
                f"got {result_file!r}"
            )
        names = _placeholders(result_file, "optimizee.result_file")
        _check_names(names, "optimizee.result_file", space_names, ())
    return spec.model_copy(update={"argv": argv, "launcher": launcher})


# -- running -------------------------------------------------------------------------------------


def _check(req: SpecCheck) -> CheckedSpec:
    try:
        return CheckedSpec(check_command(req.spec, req.base_dir, list(req.space_config or {})))
    except OptimizeeLoadError as exc:
        raise ConfigError(str(exc)) from None


COMMAND_KIND = OptimizeeKind("command", check=_check, build=CommandOptimizee)
