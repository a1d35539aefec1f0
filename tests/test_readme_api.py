"""The README's Python API snippet, saved as a script, runs as shipped; the same code without
its ``if __name__ == "__main__":`` guard stops with one line of advice (the local executor's
spawned workers import the main script again), pointing at no log file that does not exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADVICE = 'put the code that starts the run under `if __name__ == "__main__":`'


def _snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _project(tmp: Path, code: str) -> Path:
    """The script and examples/quickstart.yaml as a user's checkout has them."""
    (tmp / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "quickstart.yaml", tmp / "examples" / "quickstart.yaml")
    script = tmp / "snippet.py"
    script.write_text(code)
    return script


def _run(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)], cwd=script.parent, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip


def test_the_readme_snippet_runs_as_a_script(tmp_path: Path) -> None:
    code = _snippet()
    assert 'if __name__ == "__main__":' in code
    script = _project(tmp_path, code + "    print('ROWS', len(records), len(frame))\n")
    r = _run(script)
    assert r.returncode == 0, r.stderr
    rows = re.search(r"^ROWS (\d+) (\d+)$", r.stdout, re.M)
    assert rows and rows.group(1) == rows.group(2) and int(rows.group(1)) > 0, r.stdout
    best = r.stdout.splitlines()[0].split()[0]  # summary.best.fitness
    assert float(best.strip("[](),")) >= 0.0  # Rastrigin: 0 at the optimum
    assert (tmp_path / "q.db").exists()


def test_the_unguarded_snippet_gets_one_line_of_advice(tmp_path: Path) -> None:
    guarded = _snippet()
    lines = guarded.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("if __name__"))
    body = textwrap.dedent("\n".join(lines[at + 1 :]))
    code = "\n".join(lines[:at]) + "\n" + body + "\n"  # the same code at module level
    r = _run(_project(tmp_path, code))
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("metaloop.executors.base.ExecutorError: a worker could not start:")
    assert last.endswith(ADVICE), last
    assert r.stderr.count(ADVICE) == 1  # the workers print nothing of their own
    # no pointer to a log file; none that it names is missing
    for path in re.findall(r"(/\S+\.log)", r.stderr):
        assert Path(path).exists(), path
    assert not (tmp_path / "q.db").exists()  # stopped before the store was created


def test_a_worker_dying_at_start_names_its_log_only_if_it_exists(tmp_path: Path) -> None:
    from metaloop.executors.local import _worker_log_hint

    assert "wrote no log" in _worker_log_hint(str(tmp_path), 3)
    log = tmp_path / "logs" / "worker-3.log"
    log.parent.mkdir()
    log.write_text("Traceback ...\n")
    assert _worker_log_hint(str(tmp_path), 3) == f"log: {log}"
