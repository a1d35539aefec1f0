"""Garbage results and faults for tests/test_faults_results.py, one per ``GARBAGE_MODE``
(an environment variable, so that every worker process sees it).

Loaded by file path (``/abs/path/garbage.py:evaluate``).  ``command_main`` is the same for a
``kind: command`` program (``python garbage.py MODE``, printing its result on stdout).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from fractions import Fraction

import numpy as np


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken too")


class NotAStr(Exception):
    def __str__(self):  # type: ignore[override]
        return 42

    def __repr__(self):  # type: ignore[override]
        return None


class NoRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class NoFloat:
    def __float__(self) -> float:
        raise RuntimeError("no float")


def _loop() -> list:
    a: list = []
    a.append(a)
    return a


def _raise(exc: BaseException):
    raise exc


#: mode -> what ``evaluate`` returns (a callable: called; raising is the fault)
RETURNS = {
    "bigint": lambda: 10**400,
    "neg_bigint": lambda: -(10**400),
    "bigint_list": lambda: [10**400],
    "big_fraction": lambda: Fraction(10**400, 3),
    "big_decimal": lambda: Decimal("1e400"),
    "nan": lambda: float("nan"),
    "inf": lambda: float("inf"),
    "np_inf": lambda: np.float64("-inf"),
    "none": lambda: None,
    "string": lambda: "1.0",
    "bytes": lambda: b"1.0",
    "bool": lambda: True,
    "object": lambda: object(),
    "no_repr": lambda: NoRepr(),
    "no_float": lambda: NoFloat(),
    "dict_no_fitness": lambda: {"loss": 1.0},
    "dict_nan_fitness": lambda: {"fitness": float("nan")},
    "metrics_not_mapping": lambda: {"fitness": 1.0, "metrics": [1, 2]},
    "metrics_no_repr": lambda: {"fitness": 1.0, "metrics": {"m": NoRepr()}},
    "metrics_circular": lambda: {"fitness": 1.0, "metrics": {"m": _loop()}},
    "metrics_huge_int": lambda: {"fitness": 1.0, "metrics": {"m": 10**5000}},
    "outputs_circular": lambda: {"fitness": 1.0, "outputs": {"o": _loop()}},
    "constraints_nan": lambda: {"fitness": 1.0, "constraints": [0.0, float("nan")]},
    "constraints_text": lambda: {"fitness": 1.0, "constraints": "high"},
    "constraints_nested": lambda: {"fitness": 1.0, "constraints": [[1.0]]},
    "wrong_count": lambda: [1.0, 2.0],
    "empty_list": lambda: [],
    "nested_list": lambda: [[1.0]],
    "object_array": lambda: np.array([object()], dtype=object),
    "string_array": lambda: np.array(["1.0"]),
    "set": lambda: {1.0},
    "generator": lambda: (x for x in [1.0]),
    "complex": lambda: 1 + 2j,
    # exceptions: failed
    "unprintable_exc": lambda: _raise(Unprintable()),
    "exc_not_str": lambda: _raise(NotAStr()),
    "huge_exc": lambda: _raise(ValueError("x" * (50 * 1024 * 1024))),
    "base_exc": lambda: _raise(BaseException("a plain BaseException")),
}


def evaluate(params, ctx):
    mode = os.environ["GARBAGE_MODE"]
    if mode == "ok":
        return float(np.sum(np.square(params["x"])))
    if mode == "spawn_sigterm_ignored":  # a child that ignores SIGTERM, and a grandchild
        workdir = ctx.workdir
        proc = subprocess.Popen(
            ["sleep", "1000"], preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)
        )
        shell = subprocess.Popen(
            ["sh", "-c", "trap '' TERM; sleep 1000 & echo $! > grandchild.pid; wait"],
            cwd=workdir,
        )
        (workdir / "child.pid").write_text(f"{proc.pid}\n{shell.pid}\n")
        for _ in range(500):
            if (workdir / "grandchild.pid").exists():
                break
            time.sleep(0.01)
        return 1.0
    if mode == "spawn_orphan":  # the child exits at once, leaving its own child (a daemon)
        workdir = ctx.workdir
        subprocess.run(
            ["sh", "-c", "trap '' TERM; (trap '' TERM; exec sleep 1000) & echo $! > orphan.pid"],
            cwd=workdir,
            check=True,
        )
        return 1.0
    if mode == "spawn_then_raise":
        workdir = ctx.workdir
        proc = subprocess.Popen(
            ["sleep", "1000"], preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)
        )
        (workdir / "child.pid").write_text(f"{proc.pid}\n")
        raise RuntimeError("failed after starting a child")
    if mode in ("spawn_then_exit", "spawn_then_hang"):  # the worker dies / times out
        workdir = ctx.workdir
        proc = subprocess.Popen(
            ["sleep", "1000"], preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)
        )
        (workdir / "child.pid").write_text(f"{proc.pid}\n")
        if mode == "spawn_then_exit":
            os._exit(3)
        time.sleep(60)
    if mode == "print_100mb":
        line = "y" * 1023 + "\n"
        block = line * 1024
        for _ in range(100):
            sys.stdout.write(block)
        sys.stdout.flush()
        return 1.0
    if mode == "report":  # reports a value (for the stale-marker test)
        for step in range(3):
            ctx.report(step, loss=float(step))
        return 1.0
    return RETURNS[mode]()


#: mode -> the bytes a command program prints on stdout
PRINTS = {
    "bigint": b"1" + b"0" * 400 + b"\n",
    "json_bigint": b'{"fitness": 1' + b"0" * 400 + b"}\n",
    "json_bigint_list": b"[1" + b"0" * 400 + b", 2]\n",
    "nan": b"nan\n",
    "inf": b"-inf\n",
    "empty": b"\n",
    "nothing": b"",
    "words": b"not a number\n",
    "non_utf8": b"\xff\xfe\x80 0.5\n",
    "non_utf8_only": b"\xff\xfe\x80\n",
    "json_null": b"null\n",
    "json_string": b'"1.0"\n',
    "json_nested": b"[[1.0]]\n",
    "json_no_fitness": b'{"loss": 1.0}\n',
    "json_bad_metrics": b'{"fitness": 1.0, "metrics": 3}\n',
    "two_numbers": b"1.0 2.0\n",
}


def command_main(mode: str) -> None:
    if mode.startswith("file_"):  # result_file garbage: same contents in result.txt
        with open("result.txt", "wb") as f:
            f.write(PRINTS[mode[5:]])
        print("0.5")  # stdout is not the result when result_file is set
        return
    sys.stdout.buffer.write(PRINTS[mode])
    sys.stdout.flush()


if __name__ == "__main__":
    command_main(sys.argv[1])
