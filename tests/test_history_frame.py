"""``history_frame`` decoded a page and a column at a time, and the export's guessed layout:
both must give exactly what decoding every row gives (the frame of ``export_rows``, the
bytes of an export whose layout was found by passes over the rows first)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from services import need_module

from metaloop.records import Evaluation, Status
from metaloop.store import open_store
from metaloop.store.scan import PAGE


def _ev(g: int, i: int, params: dict, fitness=(1.0,), **kw) -> Evaluation:
    return Evaluation(
        generation=g, index=i, params=params, status=Status(kw.pop("status", "ok")),
        fitness=fitness, metrics=kw.pop("metrics", {}), attempts=1, error=kw.pop("error", None),
        started=1.7e9 + i / 3, finished=1.7e9 + i / 3 + 0.125, host="h", worker="w", **kw,
    )


def kinds_store(path: Path, odd: bool = True) -> str:
    """2.4 pages of evaluations with every kind of param (real, int, choice with an escaped
    string, a 3-vector, a bool), float and int metrics, 2 % failed (no fitness, an error
    text), a row without metrics; with ``odd``, a row whose metric is NaN (its page is
    decoded row by row) in the middle page."""
    rng = np.random.default_rng(3)
    url = f"sqlite:///{path}"
    n = PAGE * 2 + PAGE // 2
    with open_store(url) as store:
        exp = store.create_experiment("kinds", {"direction": "minimize"}, 0).id
        for g, a in enumerate(range(0, n - 2, 4000)):
            k = min(4000, n - 2 - a)
            fit = rng.normal(size=(k, 1)) * 10.0 ** rng.integers(-5, 5, (k, 1))
            failed = rng.random(k) < 0.02
            fit[failed] = np.nan
            store.append_many(
                exp, g, np.arange(k),
                {"x": rng.uniform(-5, 5, k) * 1e-3, "n": rng.integers(-9, 9, k),
                 "act": rng.choice(["relu", "tanh", "é"], k), "v": rng.normal(size=(k, 3)),
                 "flag": rng.random(k) < 0.5},
                np.where(failed, "failed", "ok"), fit, -fit[:, 0],
                metrics={"loss": rng.random(k), "steps": rng.integers(0, 100, k)},
                errors=[("ValueError: x, y" if f else None) for f in failed],
                started=1.7e9 + g, finished=1.7e9 + g + 0.25, host="node-1", worker="w0",
                seq=a,
            )
        last = g + 1
        params = {"x": 0.5, "n": 3, "act": "relu", "v": [1.0, 2.0, 3.0], "flag": True}
        store.append(exp, _ev(last, 0, params), -1.0)  # no metrics
        metrics = {"loss": float("nan") if odd else 0.5, "steps": 1}
        store.append(exp, _ev(1, 4000 - 1 + 10, params, metrics=metrics), -1.0)
    return url


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """The kinds store with and without its odd row (files: copy one to change it)."""
    where = tmp_path_factory.mktemp("kinds")
    for odd in (True, False):
        kinds_store(where / f"kinds-{odd}.db", odd)
    return {odd: where / f"kinds-{odd}.db" for odd in (True, False)}


def _copy(stores: dict[bool, Path], odd: bool, tmp_path: Path) -> str:
    shutil.copy(stores[odd], tmp_path / "kinds.db")
    return f"sqlite:///{tmp_path / 'kinds.db'}"


@pytest.mark.parametrize("odd", [True, False])
def test_history_frame_equals_the_frame_of_the_decoded_rows(
    stores: dict[bool, Path], tmp_path: Path, odd: bool
) -> None:
    pd = need_module("pandas")
    from metaloop.api import history_frame
    from metaloop.readers.export import export_rows

    url = _copy(stores, odd, tmp_path)
    with open_store(url, readonly=True) as store:
        columns, rows = export_rows(store, store.require_experiment("kinds"))
        expected = pd.DataFrame(list(rows), columns=columns)
    frame = history_frame("kinds", url)
    pd.testing.assert_frame_equal(frame, expected)
    assert len(frame) == PAGE * 2 + PAGE // 2
    kinds = {c: frame[c].dtype.kind for c in frame.columns}
    assert [kinds[c] for c in ("param.x", "param.n", "param.v.2", "param.flag")] == [
        "f", "i", "f", "b"]
    assert kinds["metric.steps"] == "f"  # (a row without metrics: NaN)
    assert frame["fitness"].isna().sum() == (frame["status"] == "failed").sum() > 0
    assert set(frame["param.act"]) == {"relu", "tanh", "é"}


def test_history_frame_pages_are_decoded_by_columns(stores: dict[bool, Path], tmp_path: Path
                                                   ) -> None:
    """The regular pages take the column path (a page with a NaN metric does not)."""
    from metaloop.readers.export import (
        FRAME_SCANNED,
        _frame_pattern,
        _page_columns,
        export_layout,
    )

    url = _copy(stores, True, tmp_path)
    with open_store(url, readonly=True) as store:
        info = store.require_experiment("kinds")
        pattern = _frame_pattern(store, info, export_layout(store, info))
        assert pattern is not None
        taken = [_page_columns(page, pattern) is not None
                 for page in store.scan_pages(info.id, FRAME_SCANNED)]
    assert taken == [True, False, True]


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("late", ["metric", "constraints", "none"])
def test_a_wrong_layout_guess_writes_the_export_again(
    stores: dict[bool, Path], tmp_path: Path, fmt: str, late: str
) -> None:
    """A file export starts from the first metrics' keys and no constraints; a row on a
    later page with another metric, or with constraint values, has it start again with
    the layout of the passes: the bytes are those of the export that found it first."""
    from metaloop.readers.export_text import export_file, write_export

    url = _copy(stores, False, tmp_path)
    params = {"x": 0.5, "n": 3, "act": "relu", "v": [1.0, 2.0, 3.0], "flag": True}
    extra = {"metric": {"metrics": {"loss": 1.0, "late": "x"}},
             "constraints": {"constraints": (0.5, -1.0)}, "none": {}}[late]
    with open_store(url) as store:
        store.append(store.require_experiment("kinds").id, _ev(9, 0, params, **extra), -1.0)
    with open_store(url, readonly=True) as store:
        info = store.require_experiment("kinds")
        exact = io.StringIO(newline="")
        n = write_export(store, info, fmt, exact)
        assert export_file(store, info, fmt, tmp_path / f"out.{fmt}") == n
    text = (tmp_path / f"out.{fmt}").read_bytes().decode()
    if fmt == "json":  # (and history_frame, which guesses the layout too)
        pd = need_module("pandas")
        from metaloop.api import history_frame
        from metaloop.readers.export import export_rows

        with open_store(url, readonly=True) as store:
            columns, rows = export_rows(store, store.require_experiment("kinds"))
            expected = pd.DataFrame(list(rows), columns=columns)
        pd.testing.assert_frame_equal(history_frame("kinds", url), expected)
    assert len(text) == len(exact.getvalue()) and (text == exact.getvalue()) is True
    header = text[:2000]
    assert ("metric.late" in header) == (late == "metric")
    assert ("constraint.1" in header) == (late == "constraints")


def test_params_whose_flattened_names_collide_are_decoded(tmp_path: Path) -> None:
    """``{"x": [1, 2], "x.0": 5}`` flattens to ``param.x.0`` twice: no pattern takes such
    rows (its groups would outnumber the columns); the export and the frame are those of
    the decoded rows."""
    pd = need_module("pandas")
    from metaloop.api import history_frame
    from metaloop.readers.export import export_rows, write_csv, write_json
    from metaloop.readers.export_text import write_export

    url = f"sqlite:///{tmp_path / 'collide.db'}"
    with open_store(url) as store:
        exp = store.create_experiment("c", {}, 0).id
        for i in range(3):
            store.append(exp, _ev(0, i, {"x": [1, 2], "x.0": 5 + i}), 1.0)
    with open_store(url, readonly=True) as store:
        info = store.require_experiment("c")
        for fmt, writer in (("csv", write_csv), ("json", write_json)):
            fast, decoded = io.StringIO(newline=""), io.StringIO(newline="")
            write_export(store, info, fmt, fast)
            writer(*export_rows(store, info), decoded)
            assert fast.getvalue() == decoded.getvalue()
        columns, rows = export_rows(store, info)
        expected = pd.DataFrame(list(rows), columns=columns)
    assert '"fitness": 1.0, "param.x.0": 5, "param.x.1": 2, "started"' in fast.getvalue()
    pd.testing.assert_frame_equal(history_frame("c", url), expected)
