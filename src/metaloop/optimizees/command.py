"""External programs as optimizees: ``{kind: command, argv: [...]}`` (any language).

Per evaluation, in the evaluation's private working directory:

* ``params.json`` holds all parameters (arrays as nested lists, floats at full precision);
  ``argv`` placeholders ``{name}`` become a parameter's value (floats as ``repr``, so the
  program parses exactly the stored double), ``{params}`` the path of ``params.json`` and
  ``{workdir}`` the directory; ``METALOOP_*`` environment variables carry the same, and
  ``METALOOP_REPORTS`` (a file to append intermediate values to, one JSON line each) and
  ``METALOOP_ARTIFACTS`` (a folder whose files are kept) serve steering and the dashboard.
  ``METALOOP_PRUNE`` is the path of the early-stopping marker: when that file exists the
  driver has stopped the evaluation, and the program may exit (any code); with early
  stopping on, the runner also looks for it every 0.2 s and ends the process group
  (SIGTERM, SIGKILL 2 s later).  Either way the evaluation is recorded ``pruned`` with the
  watched metric's last value in ``METALOOP_REPORTS``.
* The program runs as ``launcher + argv`` with the workdir as cwd, stdin from /dev/null, in
  its own process group.  stdout/stderr stream through pipes into ``stdout.txt`` /
  ``stderr.txt``, each capped at ``log_limit_bytes`` (the first half is written as it comes,
  the last half is kept in memory and appended at the end, with a marker of what was cut).
* The result is ``result_file``'s content or else the last non-empty line of stdout: a
  number, whitespace-separated numbers, or JSON (``{"fitness": ..., "metrics": {...}}`` or
  ``[f1, f2]``); anything else is returned as a string, which the Evaluator records as
  ``invalid``.  A non-zero exit raises :class:`CommandFailed` (exit code or signal, stderr
  tail); ``timeout_s`` kills the whole process group and raises :class:`CommandTimeout`.

No orphans: a tiny watcher (``/bin/sh``) is the leader of the program's process group and
blocks reading a pipe whose only writer is the evaluating process.  Whatever ends that
process (normal return, exception, Ctrl-C, SIGKILL by the local executor's timeout, the
driver dying), the pipe closes and the watcher kills the whole group (program, MPI launcher,
grandchildren).  When the program exits, whatever it left running in its group is killed too.
Only processes that leave the group themselves (``setsid``, daemons) escape.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from string import Formatter
from typing import Any

import numpy as np

from metaloop.jsonable import to_jsonable
from metaloop.optimizees.context import ARTIFACTS_DIR, PRUNE_FILE, REPORTS_FILE, Pruned

_KILL_GRACE_S = 2.0  # SIGTERM -> SIGKILL
_DRAIN_S = 2.0  # after the program exits, how long to wait for escaped holders of its pipes
_ERR_TAIL_LINES = 20
_ERR_TAIL_BYTES = 2048
_PRUNE_POLL_S = 0.2  # how often the runner looks for the stop marker (early stopping on)
# When the evaluating worker dies, its end of the pipe closes and the watcher ends the group:
# SIGTERM first (srun then cancels its job step; a SIGKILLed srun would leave the step
# running), SIGKILL two seconds later for whatever ignored it.  The watcher ignores TERM itself.
_WATCHER = ["/bin/sh", "-c", "trap '' TERM; read _ ; kill -TERM 0; sleep 2; kill -KILL 0"]


class CommandFailed(RuntimeError):
    """The program exited non-zero, was killed by a signal, or left no usable result."""


class CommandTimeout(TimeoutError):
    """The program ran longer than ``timeout_s`` and its process group was killed."""


def format_value(value: Any) -> str:
    """A parameter as text: strings as they are, everything else as JSON (floats as
    ``repr``, which parses back to the identical double; arrays as nested lists)."""
    value = to_jsonable(value)
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def _template(text: str) -> list[tuple[str, str | None]]:
    return [(literal, field) for literal, field, _s, _c in Formatter().parse(text)]


def _fill(template: list[tuple[str, str | None]], values: dict[str, str]) -> str:
    return "".join(lit + (values[field] if field is not None else "") for lit, field in template)


class _Capture:
    """One output stream: the first half of ``limit`` goes to the file as it arrives, the
    last half is kept in memory and appended at the end; the middle is dropped."""

    def __init__(self, path: Path, limit: int):
        self.file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in finish()
        self.head_max = limit // 2
        self.tail_max = limit - self.head_max
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            part = data[:room]
            self.head += part
            self.file.write(part)
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_max:
                del self.tail[: len(self.tail) - self.tail_max]

    def _trim(self) -> None:
        if len(self.tail) > self.tail_max:
            del self.tail[: len(self.tail) - self.tail_max]

    @property
    def dropped(self) -> int:
        self._trim()
        return self.total - len(self.head) - len(self.tail)

    def finish(self) -> None:
        if self.file.closed:
            return
        try:
            if self.dropped:
                self.file.write(
                    f"\n[metaloop: {self.dropped} bytes omitted here "
                    f"(log_limit_bytes={self.head_max + self.tail_max})]\n".encode()
                )
            self.file.write(self.tail)
        finally:
            self.file.close()

    def text(self) -> tuple[str, bool]:
        """What is kept, decoded, and whether it is the complete output."""
        if self.dropped:
            return self.tail.decode("utf-8", "replace"), False
        return (self.head + self.tail).decode("utf-8", "replace"), True

    def last_bytes(self, n: int) -> str:
        self._trim()
        kept = self.tail if self.dropped else self.head + self.tail
        return bytes(kept[-n:]).decode("utf-8", "replace")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(proc: subprocess.Popen[bytes], pgid: int, sig: int) -> None:
    """Signal the program's process group, and the program itself in case it left it."""
    _killpg(pgid, sig)
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except OSError:
            pass


def _in_group(pgid: int) -> dict[str, Any]:
    """Popen arguments that put the child into process group ``pgid`` (0: a new one)."""
    if sys.version_info >= (3, 11):
        return {"process_group": pgid}
    return {"preexec_fn": lambda: os.setpgid(0, pgid)}  # pragma: no cover - Python 3.10


def _pruned(reports: Path, metric: str | None) -> Pruned:
    """The Pruned of a stopped program: the last step it reported and the last finite
    value of ``metric`` in its reports file (None if there is none)."""
    step: float | None = None
    value: float | None = None
    try:
        lines = reports.read_bytes().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        s = obj.get("step")
        if isinstance(s, (int, float)) and not isinstance(s, bool):
            step = s
        values = obj.get("values") if isinstance(obj.get("values"), dict) else obj
        v = values.get(metric) if metric is not None else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            value = float(v)
    return Pruned(step, value)


def parse_output(text: str) -> Any:
    """A result text: a number -> float; whitespace-separated numbers -> list of floats;
    a JSON object or array -> the parsed value; anything else -> the stripped string."""
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    parts = s.split()
    if len(parts) > 1:
        try:
            return [float(p) for p in parts]
        except ValueError:
            pass
    try:
        value = json.loads(s)
    except ValueError:
        return s
    return value if isinstance(value, (dict, list)) else s


class CommandOptimizee:
    """Runs ``launcher + argv`` once per evaluation (see the module docstring)."""

    def __init__(self, spec: dict[str, Any]):
        self.argv = list(spec["argv"])
        launcher = spec.get("launcher") or []
        self.launcher = shlex.split(launcher) if isinstance(launcher, str) else list(launcher)
        self.result_file = spec.get("result_file")
        self.env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        self.timeout_s = spec.get("timeout_s")
        self.log_limit = int(spec.get("log_limit_bytes") or 1_000_000)
        self._argv_t = [_template(a) for a in self.argv]
        self._result_t = _template(self.result_file) if self.result_file else None
        self._program = Path(self.argv[0]).name

    def __repr__(self) -> str:
        return f"CommandOptimizee({shlex.join(self.launcher + self.argv)!r})"

    def command_line(self, params: dict[str, Any], workdir: Path) -> list[str]:
        values = {k: format_value(v) for k, v in params.items()}
        values["params"] = str(workdir / "params.json")
        values["workdir"] = str(workdir)
        return self.launcher + [_fill(t, values) for t in self._argv_t]

    def evaluate(self, params: dict[str, Any], ctx: Any) -> Any:
        workdir = Path(ctx.workdir).absolute()
        params_path = workdir / "params.json"
        plain = to_jsonable(params)
        params_path.write_text(json.dumps(plain, indent=1) + "\n")
        result_path = None
        if self._result_t is not None:
            values = {k: format_value(v) for k, v in params.items()}
            result_path = workdir / _fill(self._result_t, values)
            result_path.unlink(missing_ok=True)  # never read a previous attempt's result

        artifacts = workdir / ARTIFACTS_DIR
        artifacts.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update(
            METALOOP_PARAMS=str(params_path),
            METALOOP_WORKDIR=str(workdir),
            METALOOP_SEED=str(ctx.seed),
            METALOOP_GENERATION=str(ctx.generation),
            METALOOP_INDEX=str(ctx.index),
            METALOOP_ATTEMPT=str(ctx.attempt),
            # intermediate values: append JSON lines {"step": s, "values": {...}}
            METALOOP_REPORTS=str(workdir / REPORTS_FILE),
            # files written here are kept as the evaluation's artifacts
            METALOOP_ARTIFACTS=str(artifacts),
            # this file appears when early stopping stops the evaluation
            METALOOP_PRUNE=str(workdir / PRUNE_FILE),
        )
        for name, value in plain.items():
            if not isinstance(value, (list, dict)):
                env["METALOOP_PARAM_" + re.sub(r"\W", "_", name).upper()] = format_value(value)
        env.update(self.env)

        cmd = self.command_line(params, workdir)
        metric = getattr(ctx, "prune_metric", None)
        marker = workdir / PRUNE_FILE
        out = _Capture(workdir / "stdout.txt", self.log_limit)
        err = _Capture(workdir / "stderr.txt", self.log_limit)
        try:
            code, timed_out = self._run(
                cmd, workdir, env, out, err, str(marker) if metric is not None else None
            )
        finally:
            out.finish()
            err.finish()
        if not timed_out and marker.exists():
            if code != 0 or not self._has_result(result_path, out):
                raise _pruned(workdir / REPORTS_FILE, metric)

        if timed_out:
            raise CommandTimeout(
                f"{self._program} timed out after {self.timeout_s:g} s "
                f"(process group killed){self._stderr_tail(err)}"
            )
        if code != 0:
            how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
            raise CommandFailed(f"{self._program} {how}{self._stderr_tail(err)}")
        if result_path is not None:
            try:
                return parse_output(result_path.read_text(errors="replace"))
            except FileNotFoundError:
                raise CommandFailed(
                    f"{self._program} exited with code 0 but did not write result_file "
                    f"{result_path}"
                ) from None
        text, complete = out.text()
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            return text.strip()  # nothing printed: recorded as invalid
        if not complete and len(lines) == 1 and "\n" not in text.rstrip():
            raise CommandFailed(
                f"the last line of {self._program}'s stdout is longer than the kept "
                f"{out.tail_max} bytes; write the result to a result_file"
            )
        return parse_output(lines[-1])

    @staticmethod
    def _has_result(result_path: Path | None, out: _Capture) -> bool:
        """The program left a result (it finished before it saw the stop marker)."""
        if result_path is not None:
            return result_path.exists()
        return bool(out.text()[0].strip())

    @staticmethod
    def _stderr_tail(err: _Capture) -> str:
        tail = err.last_bytes(_ERR_TAIL_BYTES)
        lines = tail.splitlines()[-_ERR_TAIL_LINES:]
        if not any(line.strip() for line in lines):
            return " (stderr is empty)"
        return "; last lines of stderr:\n" + "\n".join(lines)

    def _run(
        self,
        cmd: list[str],
        workdir: Path,
        env: dict[str, str],
        out: _Capture,
        err: _Capture,
        marker: str | None = None,
    ) -> tuple[int, bool]:
        """Run ``cmd`` to its end; (exit code, whether it timed out)."""
        guard_r, guard_w = os.pipe()
        try:
            watcher = subprocess.Popen(
                _WATCHER,
                stdin=guard_r,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                **_in_group(0),
            )
        except BaseException:
            os.close(guard_w)
            raise
        finally:
            os.close(guard_r)
        pgid = watcher.pid
        proc: subprocess.Popen[bytes] | None = None
        try:
            try:
                proc = subprocess.Popen(
                    cmd,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    **_in_group(pgid),
                )
            except OSError as exc:
                raise CommandFailed(f"cannot start {shlex.join(cmd)}: {exc}") from None
            return self._supervise(proc, pgid, out, err, marker)
        finally:
            _killpg(pgid, signal.SIGKILL)  # leftovers of the program, and the watcher
            os.close(guard_w)
            watcher.wait()
            if proc is not None:
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
                if proc.poll() is None:  # it left the group (setsid): not covered above
                    _terminate(proc, pgid, signal.SIGKILL)
                proc.wait()

    def _supervise(
        self,
        proc: subprocess.Popen[bytes],
        pgid: int,
        out: _Capture,
        err: _Capture,
        marker: str | None = None,
    ) -> tuple[int, bool]:
        """Feed the output captures until the program ends; end it at ``timeout_s`` or when
        the stop ``marker`` file appears (looked for every 0.2 s when given)."""
        assert proc.stdout is not None and proc.stderr is not None
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        next_look = time.monotonic() if marker is not None else None
        stopping = False
        kill_at: float | None = None
        drain_until: float | None = None
        timed_out = False
        code: int | None = None
        sel = selectors.DefaultSelector()
        pidfd = -1
        try:
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            if hasattr(os, "pidfd_open"):
                try:
                    pidfd = os.pidfd_open(proc.pid)
                    sel.register(pidfd, selectors.EVENT_READ, None)
                except OSError:
                    pidfd = -1
            streams = 2
            while True:
                if code is not None and (streams == 0 or time.monotonic() >= drain_until):
                    break
                now = time.monotonic()
                times = (deadline, kill_at, drain_until, next_look)
                waits = [t - now for t in times if t is not None]
                if pidfd < 0 and code is None:
                    waits.append(0.05)  # no pidfd (not Linux): notice the exit by polling
                for key, _ in sel.select(max(0.0, min(waits)) if waits else None):
                    if key.data is None:
                        continue  # the pidfd: the exit is checked below
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        key.data.feed(data)
                    else:
                        sel.unregister(key.fileobj)
                        streams -= 1
                if code is None and proc.poll() is not None:
                    code = proc.returncode
                    _killpg(pgid, signal.SIGKILL)  # what it left behind; pipes close now
                    drain_until = time.monotonic() + _DRAIN_S
                    if pidfd >= 0:
                        sel.unregister(pidfd)
                now = time.monotonic()
                if deadline is not None and not timed_out and now >= deadline and code is None:
                    timed_out = True
                    _terminate(proc, pgid, signal.SIGTERM)
                    kill_at = now + _KILL_GRACE_S
                if next_look is not None and code is None and now >= next_look:
                    next_look = now + _PRUNE_POLL_S
                    if not stopping and not timed_out and os.path.exists(marker):  # type: ignore[arg-type]
                        stopping = True
                        _terminate(proc, pgid, signal.SIGTERM)
                        kill_at = now + _KILL_GRACE_S
                elif code is not None:
                    next_look = None
                if kill_at is not None and now >= kill_at:
                    _terminate(proc, pgid, signal.SIGKILL)
                    kill_at = None
        finally:
            sel.close()
            if pidfd >= 0:
                os.close(pidfd)
        assert code is not None
        return code, timed_out
