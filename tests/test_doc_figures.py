"""The performance figures of the docs name a command that exists, and the deterministic ones
(utilisations in virtual time, early-stopping savings) are rerun here.

* every ``python benchmarks/<script>.py --flag ...`` quoted in docs/performance.md and the pages
  it links names a script of benchmarks/ and flags that script defines (a figure whose command
  was renamed or never existed fails here);
* docs/performance.md's sync/async table (benchmarks/scale.py): the utilisation cells of the
  100-worker rows, and the 40-worker, 25-round figures quoted below it, rerun with the
  benchmark's own ``row`` (virtual time: same digits);
* docs/early_stopping.md: the virtual-epoch table as printed, and the figures with 8 workers and
  decisions 2 epochs late (benchmarks/early_stopping.py).

Timings are not rerun (they vary with the shared machine's load): docs/performance_audit.md
lists each with its command and the values of the last re-measurement.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BENCH = ROOT / "benchmarks"
PAGES = ["performance.md", "dask.md", "mpi.md", "slurm.md", "hpc.md", "storage.md", "async.md",
         "early_stopping.md", "performance_audit.md", "performance_history.md"]  # fmt: skip
COMMAND = re.compile(r"python benchmarks/(\w+)\.py((?:\s+(?:--?[\w-]+|[\w.,:/@-]+))*)")


def _commands() -> list[tuple[str, str, str]]:
    """(page, script, flags) of every benchmark command quoted on the pages."""
    found = []
    for page in PAGES:
        text = " ".join((DOCS / page).read_text().replace("`", " ").split())
        for m in COMMAND.finditer(text):
            found.append((page, m.group(1), m.group(2)))
    return found


def test_every_quoted_benchmark_command_exists() -> None:
    commands = _commands()
    assert len(commands) > 20, commands  # the pages do quote their commands
    for page, script, flags in commands:
        path = BENCH / f"{script}.py"
        assert path.is_file(), f"{page}: benchmarks/{script}.py does not exist"
        source = path.read_text()
        for flag in re.findall(r"(?<![\w-])--[\w-]+", flags):
            assert f'"{flag}"' in source, f"{page}: benchmarks/{script}.py has no {flag}"


def _table_rows(page: str, first: str) -> list[list[str]]:
    text = (DOCS / page).read_text()
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith(f"| {first}")
    ]


@pytest.mark.parametrize("dist, label", [("constant", "constant"), ("lognormal", "lognormal"),
                                         ("pareto", "Pareto")])  # fmt: skip
def test_performance_md_scale_utilisation_reproduces(tmp_path: Path, dist: str, label: str):
    """The 100-worker rows of the sync/async table: evaluations and the four utilisations."""
    sys.path.insert(0, str(BENCH))
    import scale

    rows = [r for r in _table_rows("performance.md", "100 |") if r[1].startswith(label)]
    assert len(rows) == 1, rows
    doc = rows[0]
    store = f"sqlite:///{tmp_path / 'scale.db'}"
    n, _, s_use, s_steady = scale.row(store, 100, dist, 10, "sync", "random")
    _, _, a_use, a_steady = scale.row(store, 100, dist, 10, "async", "random")
    assert doc[2] == f"{n:,}"
    got = [f"{v:.3f}" for v in (s_use, a_use, s_steady, a_steady)]
    assert doc[5:9] == got, (dist, doc, got)


def test_performance_md_longer_campaign_utilisation_reproduces(tmp_path: Path) -> None:
    """"--workers 40 --rounds 25: 0.69 overall against sync's 0.18" (lognormal times)."""
    sys.path.insert(0, str(BENCH))
    import scale

    store = f"sqlite:///{tmp_path / 'scale.db'}"
    s_use = scale.row(store, 40, "lognormal", 25, "sync", "random")[2]
    a_use = scale.row(store, 40, "lognormal", 25, "async", "random")[2]
    quoted = f"--rounds 25`: {a_use:.2f} overall against sync's {s_use:.2f};"
    text = " ".join((DOCS / "performance.md").read_text().split())
    assert quoted in text, quoted


def _early_stopping(*args: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, str(BENCH / "early_stopping.py"), *args],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return {p[0]: p[1:] for p in map(str.split, out.splitlines()) if p and p[0] in
            ("none", "median", "asha")}  # fmt: skip


def test_early_stopping_md_figures_reproduce() -> None:
    text = (DOCS / "early_stopping.md").read_text()
    printed = _early_stopping()
    block = text.split("means over 10 seeds):")[1].split("```")[1]
    doc = {p[0]: p[1:] for p in map(str.split, block.splitlines()) if p and p[0] != "rule"}
    assert doc == printed
    late = _early_stopping("--workers", "8", "--delay", "2")
    m, a = late["median"], late["asha"]
    quoted = (
        f"median saves {m[0].replace('%', ' %')} ({m[4].replace('%', ' %')} at equal quality), "
        f"asha {a[0].replace('%', ' %')} ({a[4].replace('%', ' %')})"
    )
    assert quoted in " ".join(text.split()), quoted
