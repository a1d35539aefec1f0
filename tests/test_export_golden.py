"""``metaloop export`` stays byte for byte what it was: CSV and JSON of a small store with
arrays (1-D and 2-D), choices, ints, bools, metrics (scalars, nested values, keys appearing
late, non-finite values), constraints, two objectives (the Pareto column), failed, pruned
and timed-out evaluations, awkward error texts, and an experiment with no evaluations.

The golden files in ``tests/data/export_golden/`` were written by the export code as it
was before it was made fast (commit ee99eb2), with ``python tests/test_export_golden.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from services import need_module

from metaloop.api import export
from metaloop.records import Evaluation, Status
from metaloop.store import open_store

GOLDEN = Path(__file__).parent / "data" / "export_golden"
NAMES = ("single", "multi", "plain", "late", "empty")


def _ev(g: int, i: int, params: dict, status: str = "ok", fitness=None, **kw) -> Evaluation:
    t0 = 1_700_000_000.0 + 10 * g + i / 7
    return Evaluation(
        generation=g, index=i, params=params, status=Status(status),
        fitness=None if fitness is None else tuple(fitness), metrics=kw.pop("metrics", {}),
        attempts=kw.pop("attempts", 1), error=kw.pop("error", None), started=t0,
        finished=t0 + kw.pop("duration", 0.123456789), host=kw.pop("host", "node-1"),
        worker=kw.pop("worker", "w0"), **kw,
    )


def build_store(where: Path | str) -> str:
    """The store the goldens describe (every value fixed, so the export is too), in an
    SQLite file at a path or at a store URL."""
    url = where if isinstance(where, str) else f"sqlite:///{where}"
    with open_store(url) as store:
        single = store.create_experiment("single", {"direction": "minimize"}, 1).id
        rows = [
            _ev(0, 0, {"x": [0.1, -2.5, 1e-300], "n": 3, "act": "relu", "flag": True},
                fitness=[0.1 + 0.2], metrics={"loss": 1 / 3, "steps": 7}, seq=0),
            _ev(0, 1, {"x": [1.0, 2.0, 3.0], "n": -1, "act": "tanh, \"quoted\"", "flag": False},
                "failed", error='Traceback (most recent call last):\n  x = "a, b"\nValueError',
                attempts=3, seq=1),
            _ev(0, 2, {"x": [1e16, -0.0, 123456789.123], "n": 0, "act": "relu", "flag": True},
                fitness=[-1e-7], metrics={"loss": float("nan"), "extra": {"a": [1, 2]}},
                outputs={"y": [1.0, 2.0]}, seq=3),
            _ev(1, 0, {"x": [0.5, 0.25, 0.125], "n": 2, "act": "relu", "flag": False},
                "timeout", error="killed after 1.5 s", duration=1.5, seq=2),
            _ev(1, 1, {"x": [0.3, 0.2, 0.1], "n": 1, "act": "é ünïcode", "flag": True},
                fitness=[2.0], metrics={"steps": 9, "hist": [0.5, float("inf")], "tag": "a\nb"},
                host="", worker="", seq=None),
            _ev(1, 2, {"x": [7.0, 8.0, 9.0], "n": 4, "act": "relu", "flag": True}, "pruned",
                fitness=[5.5], metrics={"loss": 0.0}, seq=4),
        ]
        for e in rows:
            store.append(single, e, None if e.fitness is None else -e.fitness[0])
        multi = store.create_experiment("multi", {"weights": [-1.0, 1.0]}, 2).id
        pts = [((0.0, 1.0), (-1.0,)), ((1.0, 2.0), (0.5,)), ((0.5, 0.5), None),
               ((2.0, 3.0), (-0.5, 0.0)), ((0.1, 1.5), (0.0,)), ((0.2, 0.3), (-2.0,))]
        for i, (fit, con) in enumerate(pts):
            w = [[i, i + 0.5], [-i, 1e-3 * i]]
            store.append(multi, _ev(0, i, {"w": w, "c": ["a", "b"][i % 2]}, fitness=fit,
                                    constraints=con, seq=i), None)
        store.append(multi, _ev(1, 0, {"w": [[0, 0], [0, 0]], "c": "a"}, "crashed",
                                error="worker died", seq=6), None)
        store.append(multi, _ev(1, 1, {"w": [[1, 1], [1, 1]], "c": "b"}, "invalid",
                                error="returned NaN", constraints=(1.0, 2.0), seq=7), None)
        plain = store.create_experiment("plain", {"direction": "maximize"}, 3).id
        for i in range(4):
            store.append(plain, _ev(0, i, {"a": i / 3, "b": 10**i}, fitness=[i * 0.7]), i * 0.7)
        late = store.create_experiment("late", {"direction": "maximize"}, 5).id
        for i, met in enumerate([{}, {"b": 1, "a": {"k": [1.5]}}, {}, {"c": "x", "a": 2},
                                 {"d": [1, 2], "b": 0.5, "é": None}]):
            store.append(late, _ev(i // 2, i % 2, {"p": [i, i + 1], "q": "s"}, fitness=[i],
                                   metrics=met, seq=i), float(i))
        store.create_experiment("empty", {}, 4)
    return url


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_store(tmp_path_factory.mktemp("golden") / "golden.db")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_file_is_byte_identical(store_url: str, tmp_path: Path, name: str, fmt: str):
    out = tmp_path / f"{name}.{fmt}"
    n = export(name, out, storage=store_url, fmt=fmt)
    golden = (GOLDEN / f"{name}.{fmt}").read_bytes()
    assert out.read_bytes() == golden
    assert n == {"single": 6, "multi": 8, "plain": 4, "late": 5, "empty": 0}[name]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_to_stdout_is_byte_identical(store_url: str, fmt: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "metaloop", "export", "--storage", store_url, "--name", "single",
         "--format", fmt], capture_output=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == (GOLDEN / f"single.{fmt}").read_bytes()


def test_history_frame_has_the_export_columns_and_values(store_url: str) -> None:
    pd = need_module("pandas")
    from metaloop.api import history_frame

    df = history_frame("single", store_url)
    golden = pd.read_csv(GOLDEN / "single.csv")
    assert list(df.columns) == list(golden.columns)
    assert df["param.x.2"].tolist() == [1e-300, 3.0, 123456789.123, 0.125, 0.1, 9.0]
    assert df["status"].tolist() == ["ok", "failed", "ok", "timeout", "ok", "pruned"]
    assert df["fitness"].tolist()[:1] == [0.1 + 0.2] and df["fitness"].isna().tolist() == [
        False, True, False, True, False, False]
    assert df["metric.steps"].tolist()[0] == 7 and df["seq"].tolist()[:4] == [0, 1, 3, 2]
    assert df["metric.extra"].tolist()[2] == '{"a": [1, 2]}'
    multi = history_frame("multi", store_url)
    assert multi["pareto"].tolist()[:6] == [1, 0, 0, 1, 1, 0]


if __name__ == "__main__":  # write the goldens (only with the export code they pin down)
    import tempfile

    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        url = build_store(Path(d) / "golden.db")
        for name in NAMES:
            for fmt in ("csv", "json"):
                export(name, GOLDEN / f"{name}.{fmt}", storage=url, fmt=fmt)
    print(f"wrote {GOLDEN}")


TRICKY_METRICS = {  # rows' metrics, and the names (first appearance) they have
    "nested": ([{"loss": 1, "steps": 2}, {"loss": {"a": 1, "steps": 2}}], ["loss", "steps"]),
    "extra": ([{"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}, {}], ["a", "b", "c"]),
    "fewer": ([{"a": 1, "b": 2}, {"b": "x,y"}, {"a": [1, 2]}], ["a", "b"]),
    "string": ([{"a": "x", "b": 1}, {"a": "\",\"c\":", "b": 1}], ["a", "b"]),
    "order": ([{"a": 1, "b": 2}, {"b": 1, "a": 2, "*?[": 3}], ["a", "b", "*?["]),
    "same": ([{"k*": 1.5, "é": None}, {}, {"k*": 2, "é": "v"}], ["k*", "é"]),
    "late": ([{}, {}, {"z": 1}], ["z"]),
    "none": ([{}, {}], []),
}


def test_metric_names_agree_on_every_path(store_url: str, tmp_path: Path) -> None:
    """The metric names (in order of first appearance) are the same whether SQLite compares
    the text with one GLOB pattern, lists the keys with json_each, or Python decodes every
    row; awkward rows (nested values, extra keys, special characters) included."""
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    with open_store(url) as store:
        for name, (rows, _) in TRICKY_METRICS.items():
            exp = store.create_experiment(name, {}, 0).id
            for i, met in enumerate(rows):
                store.append(exp, _ev(0, i, {"p": i}, fitness=[0.0], metrics=met), 0.0)
    cases = [(url, name, names) for name, (_, names) in TRICKY_METRICS.items()]
    cases += [(store_url, "late", ["b", "a", "c", "d", "é"]),
              (store_url, "single", ["loss", "steps", "extra", "hist", "tag"])]
    for where, name, expected in cases:
        with open_store(where, readonly=True) as store:
            exp_id = store.require_experiment(name).id
            assert store.metric_names(exp_id) == expected, name
            store.GLOB = False  # json_each
            assert store.metric_names(exp_id) == expected, name
            store.METRIC_KEYS_SQL = None  # Python
            assert store.metric_names(exp_id) == expected, name


def mixed_store(path: Path) -> str:
    """300 evaluations, most shaped like the first, many not (another kind or length of a
    param, NaN or awkward metrics, errors and hosts that need quoting, escaped strings)."""
    import random

    rnd = random.Random(7)
    words = ["relu", "a,b", 'q"t', "é", "back\\slash", "", "tab\there", "x y", "nul"]
    url = f"sqlite:///{path}"
    with open_store(url) as store:
        exp = store.create_experiment("mix", {"direction": "minimize"}, 0).id
        for i in range(300):
            params = {"x": rnd.uniform(-1e6, 1e6) * 10.0 ** rnd.randint(-300, 300),
                      "v": [rnd.random(), -rnd.randint(0, 9), 1e16 * rnd.random()],
                      "s": rnd.choice(words), "b": rnd.random() < 0.5, "z": None, "n": i}
            if i % 37 == 5:
                params["z"] = 1.5  # another kind of value than the first row's
            if i % 41 == 7:
                params["v"] = [1.0, 2.0]  # another length
            metrics = rnd.choice([{}, {"m": rnd.random(), "k": "w"},
                                  {"m": float("nan"), "k": "w"}, {"m": 1, "k": "a,b"}])
            status = rnd.choice(["ok"] * 8 + ["failed", "timeout"])
            store.append(exp, _ev(
                i // 50, i % 50, params, status,
                fitness=None if status != "ok" else [rnd.gauss(0, 1e3)], metrics=metrics,
                error=None if status == "ok" else rnd.choice(["boom", "a, b", 'say "x"\n']),
                host=rnd.choice(["node-1", "node,2", ""]), worker=rnd.choice(["w0", "w 1"]),
                seq=rnd.choice([i, None])), None)
    return url


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_rows_written_from_text_equal_the_decoded_rows(tmp_path: Path, fmt: str) -> None:
    """``write_export`` writes rows shaped like the first from their stored text; every
    other row is decoded.  Both give the bytes of the decoded path (``export_rows`` and
    ``write_csv``/``write_json``, pinned by the goldens above) on a store mixing both."""
    import io

    from metaloop.readers.export import export_rows, write_csv, write_json
    from metaloop.readers.export_text import write_export

    with open_store(mixed_store(tmp_path / "mix.db"), readonly=True) as store:
        info = store.require_experiment("mix")
        columns, rows = export_rows(store, info)
        decoded, fast = io.StringIO(newline=""), io.StringIO(newline="")
        (write_csv if fmt == "csv" else write_json)(columns, rows, decoded)
        assert write_export(store, info, fmt, fast) == 300
    assert fast.getvalue() == decoded.getvalue()


@pytest.mark.parametrize("name", ["mix", "single", "multi", "late"])
def test_history_frame_by_columns_equals_the_frame_of_the_rows(
    store_url: str, tmp_path: Path, name: str
) -> None:
    """``history_frame`` decodes a page a column at a time where every row has the first
    row's shape, row by row elsewhere: the frame is the one built from ``export_rows``."""
    pd = need_module("pandas")
    from metaloop.api import history_frame
    from metaloop.readers.export import export_rows

    url = mixed_store(tmp_path / "mix.db") if name == "mix" else store_url
    with open_store(url, readonly=True) as store:
        columns, rows = export_rows(store, store.require_experiment(name))
        expected = pd.DataFrame(list(rows), columns=columns)
    pd.testing.assert_frame_equal(history_frame(name, url), expected)
