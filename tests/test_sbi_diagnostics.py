"""Diagnostics of an snpe posterior: simulation-based calibration (``metaloop sbc``,
``api.sbc``), the posterior predictive check (``metaloop ppc``, ``api.ppc``), their summaries
as events and in ``metaloop report``, and their refusals.

The task is test_snpe's linear-Gaussian one (``theta`` uniform in ``[-2, 2]^2``, stats ``=
theta + N(0, 0.1^2)``), trained on one round of prior draws (``rounds: 1``: an amortized
posterior, valid at every observation, which is what SBC over the prior checks).  Each check
is also shown to fail for a deliberately wrong posterior.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from optdriver import InterruptAfter
from services import need_module

from metaloop import api, cli
from metaloop.errors import UserError
from metaloop.optimizers.snpe import SequentialNPE
from metaloop.readers.sbi_checks import LEVELS, predictive_summary, rank_summary
from metaloop.store import open_store

X_O = [0.5, -0.3]
SIM = """
import numpy as np


def simulate(params, ctx):
    theta = np.array([params["a"], params["b"]])
    return {"outputs": {"stats": (theta + 0.1 * ctx.rng.standard_normal(2)).tolist()}}
"""
SPACE = {"a": {"type": "real", "low": -2, "high": 2}, "b": {"type": "real", "low": -2, "high": 2}}


def _config(tmp: Path, name: str, **optimizer: Any) -> dict[str, Any]:
    (tmp / "sim.py").write_text(SIM)
    return {
        "name": name,
        "seed": 5,
        "storage": f"sqlite:///{tmp / 'diag.db'}",
        "workdir": str(tmp / f"work-{name}"),
        "optimizee": {"kind": "python", "target": f"{tmp / 'sim.py'}:simulate"},
        "space": SPACE,
        "optimizer": {"kind": "snpe", "observation": X_O, **optimizer},
        "executor": {"kind": "serial"},
    }


def _main(*argv: str) -> int:
    try:
        return cli.main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


# -- the statistics alone (no network) ---------------------------------------------------------
def test_rank_summary_accepts_uniform_ranks_and_flags_wrong_ones() -> None:
    rng = np.random.default_rng(0)
    L, n = 100, 400
    good = rank_summary(rng.integers(0, L + 1, n), L, "g")
    assert good["uniform"] and good["calibrated"] and good["p_value"] > 0.001
    assert good["max_coverage_deviation"] < 0.1 and len(good["coverage"]) == len(LEVELS)
    assert good["verdict"].startswith("g: ranks uniform (p=")
    # too narrow a posterior: the true value is often beyond every draw
    theta = rng.standard_normal(n)
    narrow = rank_summary([(0.4 * rng.standard_normal(L) < t).sum() for t in theta], L, "g")
    assert not narrow["uniform"] and narrow["p_value"] < 1e-6
    assert "overconfident" in narrow["verdict"] and "NOT uniform" in narrow["verdict"]
    wide = rank_summary([(3 * rng.standard_normal(L) < t).sum() for t in theta], L, "g")
    assert not wide["calibrated"] and "underconfident" in wide["verdict"]


def test_predictive_summary() -> None:
    v = np.arange(100.0)
    s = predictive_summary(v, 50.0)
    assert s["inside"] and s["percentile"] == pytest.approx(0.505) and s["p_value"] > 0.9
    far = predictive_summary(v, 200.0)
    assert not far["inside"] and far["percentile"] == 1.0 and far["p_value"] == 0.0


# -- on a trained posterior --------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A rounds: 1 linear-Gaussian experiment (300 prior simulations) and a random one."""
    need_module("sbi", "pip install -e .[test]")
    need_module("torch", "pip install torch (the CPU build)")
    tmp = tmp_path_factory.mktemp("diag")
    cfg = _config(tmp, "lg", pop_size=300, rounds=1, training_batch_size=50)
    assert api.Experiment(cfg).run().status == "finished"
    other = _config(tmp, "rs")
    other.update(optimizer={"kind": "random", "pop_size": 4}, generations=1)
    other["optimizee"] = {"kind": "function", "name": "sphere", "dims": 2}
    del other["space"]
    api.Experiment(other).run()
    return {"tmp": tmp, "storage": cfg["storage"]}


def _shifted(monkeypatch: pytest.MonkeyPatch, by: float) -> None:
    """A wrong posterior: every draw moved by ``by`` (unit cube; the posterior's sd: 0.025)."""
    original = SequentialNPE.sample_posterior

    def shifted(self: Any, n: int, seed: int, observation: Any = None) -> np.ndarray:
        return original(self, n, seed, observation) + by

    monkeypatch.setattr(SequentialNPE, "sample_posterior", shifted)


def test_sbc_of_a_good_posterior_is_calibrated(trained: dict[str, Any]) -> None:
    result = api.sbc("lg", trained["storage"], simulations=200, samples=100, record=False)
    assert result["source"] == "stored round 0" and result["simulations"] == 200
    assert result["ranks"].shape == (200, 2) and result["warning"] is None
    assert result["ranks"].min() >= 0 and result["ranks"].max() <= 100
    for name, p in result["parameters"].items():
        assert p["p_value"] > 0.001, (name, p)
        assert p["max_coverage_deviation"] < 0.15, (name, p)
    fresh = api.sbc("lg", trained["storage"], simulations=100, samples=60, seed=1, fresh=True,
                    record=False)  # fmt: skip
    assert fresh["source"] == "fresh" and fresh["simulations"] == 100 and fresh["dropped"] == 0
    for name, p in fresh["parameters"].items():
        assert p["p_value"] > 0.001 and p["max_coverage_deviation"] < 0.2, (name, p)
    again = api.sbc("lg", trained["storage"], simulations=100, samples=60, seed=1, fresh=True,
                    record=False)  # fmt: skip
    assert np.array_equal(again["ranks"], fresh["ranks"])  # seeded, simulations included


def test_sbc_detects_a_shifted_posterior(
    trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _shifted(monkeypatch, 0.05)
    result = api.sbc("lg", trained["storage"], simulations=100, samples=50, record=False)
    for p in result["parameters"].values():
        assert p["p_value"] < 1e-6 and not p["calibrated"]
        assert p["max_coverage_deviation"] > 0.3 and p["mean_rank"] < 0.2
        assert "NOT uniform" in p["verdict"]


def test_ppc_of_a_good_posterior_covers_the_observation(trained: dict[str, Any]) -> None:
    storage = trained["storage"]
    before = len(api.history("lg", storage))
    workdir = trained["tmp"] / "work-lg"
    files = sorted(workdir.rglob("*")) if workdir.exists() else []
    result = api.ppc("lg", storage, n=40, seed=2, record=False)
    assert result["simulated"] == 40 and result["stats"].shape == (40, 2)
    for i, (name, s) in enumerate(result["statistics"].items()):
        assert name == f"stat.{i}" and s["observed"] == X_O[i]
        assert s["inside"] and s["q05"] < s["median"] < s["q95"], s
        assert abs(s["median"] - X_O[i]) < 0.15
    # nothing written to the experiment: no evaluations, no files in its workdir
    assert len(api.history("lg", storage)) == before
    assert (sorted(workdir.rglob("*")) if workdir.exists() else []) == files


def test_ppc_detects_a_posterior_at_a_shifted_observation(
    trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = SequentialNPE.sample_posterior

    def elsewhere(self: Any, n: int, seed: int, observation: Any = None) -> np.ndarray:
        return original(self, n, seed, np.add(X_O, 1.0))  # the posterior of x_o + 1

    monkeypatch.setattr(SequentialNPE, "sample_posterior", elsewhere)
    result = api.ppc("lg", trained["storage"], n=20, record=False)
    for s in result["statistics"].values():
        assert not s["inside"] and s["p_value"] < 0.05 and s["percentile"] < 0.05


def test_cli_sbc_and_ppc_write_csv_png_events_and_the_report(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_module("matplotlib")
    storage = trained["storage"]
    before = len(api.history("lg", storage))
    ranks, fig = tmp_path / "ranks.csv", tmp_path / "sbc.png"
    code = _main("sbc", "--storage", storage, "--name", "lg", "--simulations", "60",
                 "--samples", "40", "-o", str(ranks), "--plot", str(fig))  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("SBC of 'lg': 60 stored round-0 simulations (prior draws")
    assert lines[1].startswith("a: ranks ") and lines[2].startswith("b: ranks ")
    rows = list(csv.reader(ranks.open()))
    assert rows[0] == ["kind", "parameter", "at", "value"]
    assert len(rows) == 1 + 2 * (60 + len(LEVELS))
    assert {r[0] for r in rows[1:]} == {"rank", "coverage"}
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sims, pfig = tmp_path / "ppc.csv", tmp_path / "ppc.png"
    code = _main("ppc", "--storage", storage, "--name", "lg", "-n", "12", "-o", str(sims),
                 "--plot", str(pfig))  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0] == "PPC of 'lg': 12 posterior draws simulated"
    assert out.splitlines()[1].startswith("stat.0: observed 0.5 ")
    rows = list(csv.reader(sims.open()))
    assert rows[0] == ["draw", "ok", "param.a", "param.b", "stat.0", "stat.1"]
    assert len(rows) == 13 and all(r[1] == "1" for r in rows[1:])
    assert pfig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(api.history("lg", storage)) == before  # ppc added no evaluation
    with open_store(storage, readonly=True) as store:
        events = store.events(store.require_experiment("lg").id, kinds=("sbc", "ppc"))
    assert [e.kind for e in events][-2:] == ["sbc", "ppc"]
    assert set(events[-2].data["parameters"]) == {"a", "b"}
    assert events[-1].data["statistics"]["stat.0"]["observed"] == 0.5
    report = tmp_path / "r.html"
    assert _main("report", "--storage", storage, "--name", "lg", "-o", str(report)) == 0
    text = report.read_text()
    assert "<h2>Posterior diagnostics</h2>" in text
    assert "Simulation-based calibration" in text and "Posterior predictive check" in text
    assert "SBC over 60 stored round 0 simulations" in text and "<td>stat.1</td>" in text


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["sbc", "--name", "nope"], "nope"),
        (["sbc", "--name", "rs"], "sbc: only for snpe experiments so far ('rs' uses optimizer "
                                  "'random')"),
        (["ppc", "--name", "rs"], "ppc: only for snpe experiments so far ('rs' uses optimizer "
                                  "'random')"),
        (["sbc", "--name", "lg", "--simulations", "0"],
         "argument --simulations: expected a positive integer, got 0"),
        (["sbc", "--name", "lg", "--samples", "-1"],
         "argument --samples: expected a positive integer, got -1"),
        (["ppc", "--name", "lg", "-n", "0"], "argument -n: expected a positive integer, got 0"),
        (["sbc", "--name", "lg", "-o", "{tmp}"], "-o: {tmp} is a directory; expected a file name"),
        (["ppc", "--name", "lg", "-o", "{tmp}"], "-o: {tmp} is a directory; expected a file name"),
        (["sbc", "--name", "lg", "--plot", "{tmp}/f.xyz"],
         "--plot: unsupported image format ('.xyz'); expected one of "),
        (["ppc", "--name", "lg", "--plot", "{tmp}/f"],
         "--plot: unsupported image format (no extension); expected one of "),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_nothing_written(
    trained: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    error: str,
) -> None:
    storage = trained["storage"]
    with open_store(storage, readonly=True) as store:
        n_events = len(store.events(store.require_experiment("lg").id))
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out.csv")]
    code = _main(*argv[:1], "--storage", storage, *argv[1:])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("metaloop: error: ") and error.format(tmp=tmp_path) in err[0]
    assert list(tmp_path.iterdir()) == []
    with open_store(storage, readonly=True) as store:
        assert len(store.events(store.require_experiment("lg").id)) == n_events


def test_api_refusals_and_an_untrained_or_sequential_posterior(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    storage = trained["storage"]
    for bad in (0, -2, 1.5, True):
        with pytest.raises(UserError, match="^--simulations: expected a positive integer"):
            api.sbc("lg", storage, simulations=bad, record=False)  # type: ignore[arg-type]
        with pytest.raises(UserError, match="^-n: expected a positive integer"):
            api.ppc("lg", storage, n=bad, record=False)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="^sbc: only for snpe experiments so far"):
        api.sbc("rs", storage)
    # interrupted in its first round: no posterior yet
    cut = _config(tmp_path, "cut", pop_size=30, rounds=1)
    assert api.Experiment(cut).run(observer=InterruptAfter(5)).status == "interrupted"
    for check in (api.sbc, api.ppc):
        with pytest.raises(UserError, match="experiment 'cut' has no trained posterior yet"):
            check("cut", cut["storage"])
    # trained over two rounds: focused on x_o, SBC over the prior says so
    seq = _config(tmp_path, "seq", pop_size=40, rounds=2, max_num_epochs=10,
                  truncation_samples=1000)  # fmt: skip
    api.Experiment(seq).run()
    with pytest.warns(UserWarning, match="trained over 2 rounds, focused on its observation"):
        result = api.sbc("seq", seq["storage"], simulations=10, samples=10)
    assert result["trained_rounds"] == 2 and result["simulations"] == 10
    with open_store(seq["storage"], readonly=True) as store:  # recorded: record=True
        (event,) = store.events(store.require_experiment("seq").id, kinds=("sbc",))
    assert event.message.startswith("SBC over 10 stored round 0 simulations, 10 samples each")
