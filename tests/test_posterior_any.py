"""A posterior for any stored experiment whose evaluations returned ``outputs.stats`` (a
CMA-ES, a random search): neural likelihood estimation on the stored simulations and slice
sampling under the space's prior (``metaloop posterior``, ``api.posterior_samples``,
``readers/likelihood_posterior.py``, ``optimizers/nle_net.py``, ``slice_sampling.py``).

The task is test_snpe.py's: ``theta`` uniform in ``[-2, 2]^2``, stats ``= theta + N(0,
0.1^2)`` seeded per evaluation, so the posterior at ``x_o`` is ``N(x_o, 0.1^2 I)``; the
campaigns also return a fitness (the distance of the stats to ``x_o``) for the optimizer.
Tests that train call ``need_module("sbi")`` and ``need_module("torch")``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from services import need_module

from metaloop import cli
from metaloop.api import Experiment, history, posterior_samples
from metaloop.errors import UserError
from metaloop.optimizers import slice_sampling
from metaloop.readers import likelihood_posterior

X_O = [0.5, -0.3]
X_FAR = [-1.5, 1.5]  # where the CMA-ES campaign (converging to x_o) hardly went
SIM = """
import numpy as np

X_O = np.array([0.5, -0.3])


def simulate(params, ctx):
    theta = np.array([params["a"], params["b"]])
    stats = theta + 0.1 * ctx.rng.standard_normal(2)
    return {"fitness": float(np.linalg.norm(stats - X_O)), "outputs": {"stats": stats.tolist()}}


def simulate_gaps(params, ctx):  # no usable stats where a > 1.8: left out
    out = simulate(params, ctx)
    if params["a"] > 1.8:
        out["outputs"]["stats"][0] = float("nan")
    return out


def no_stats(params, ctx):
    return {"fitness": params["a"] ** 2}
"""
SPACE = {"a": {"type": "real", "low": -2, "high": 2}, "b": {"type": "real", "low": -2, "high": 2}}


def _need_sbi() -> None:
    need_module("sbi", "pip install -e .[test]")
    need_module("torch", "pip install torch (the CPU build)")


def _run(tmp: Path, name: str, optimizer: dict[str, Any], generations: int, **kw: Any) -> str:
    (tmp / "sim.py").write_text(SIM)
    cfg = {
        "name": name,
        "seed": 7,
        "storage": f"sqlite:///{tmp / 'any.db'}",
        "optimizee": {"kind": "python", "target": f"{tmp / 'sim.py'}:{kw.pop('fn', 'simulate')}"},
        "space": kw.pop("space", SPACE),
        "optimizer": optimizer,
        "generations": generations,
        "executor": {"kind": "serial"},
    }
    Experiment(cfg).run()
    return cfg["storage"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CMA-ES campaign towards x_o and a random search (300 simulations each), and small
    ones for the refusals."""
    tmp = tmp_path_factory.mktemp("any")
    storage = _run(tmp, "cm", {"kind": "cmaes", "pop_size": 20}, 15)
    _run(tmp, "rs", {"kind": "random", "pop_size": 50}, 6, fn="simulate_gaps")
    _run(tmp, "few", {"kind": "random", "pop_size": 20}, 1)
    _run(tmp, "nostats", {"kind": "random", "pop_size": 4}, 1, fn="no_stats")
    ints = {**SPACE, "n": {"type": "int", "low": 0, "high": 3}}
    _run(tmp, "ints", {"kind": "random", "pop_size": 4}, 1, space=ints)
    return {"tmp": tmp, "storage": storage}


def _stats(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    draws = np.column_stack([columns["param.a"], columns["param.b"]])
    return draws.mean(axis=0), draws.std(axis=0)


# -- the sampler alone (no torch) ----------------------------------------------------------------
class _Gaussian:
    """log N(mean, std^2 I) on the unit cube."""

    def __init__(self, mean: list[float], std: float) -> None:
        self.mean, self.std = np.array(mean), std

    def __call__(self, U: np.ndarray) -> np.ndarray:
        lp = -0.5 * (((U - self.mean) / self.std) ** 2).sum(axis=1)
        return np.where(((U >= 0) & (U <= 1)).all(axis=1), lp, -np.inf)


def test_slice_sampler_draws_a_known_density_reproducibly() -> None:
    logp = _Gaussian([0.3, 0.8], 0.05)

    def draws(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        start, widths = slice_sampling.initial_points(logp, 2, 50, 5000, rng)
        return slice_sampling.slice_sample(logp, start, widths, 5000, rng, warmup=50)

    X = draws(1)
    assert X.shape == (5000, 2) and ((X >= 0) & (X <= 1)).all()
    assert np.abs(X.mean(axis=0) - [0.3, 0.8]).max() < 0.005
    assert np.abs(X.std(axis=0) - 0.05).max() < 0.004
    assert np.array_equal(draws(1), X) and not np.array_equal(draws(2), X)
    # a density cut by the cube's face: a half-normal on [0, 1] at coordinate 0
    edge = _Gaussian([0.0, 0.5], 0.1)
    rng = np.random.default_rng(0)
    start, widths = slice_sampling.initial_points(edge, 2, 50, 5000, rng)
    Y = slice_sampling.slice_sample(edge, start, widths, 5000, rng, warmup=50)
    assert Y[:, 0].mean() == pytest.approx(0.1 * np.sqrt(2 / np.pi), abs=0.005)


def test_slice_sampler_refuses_a_density_zero_everywhere() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="zero .* at every starting point"):
        slice_sampling.initial_points(lambda U: np.full(len(U), -np.inf), 2, 5, 100, rng)


# -- the posterior from a campaign ---------------------------------------------------------------
def test_random_search_posterior_matches_the_analytic_one(runs: dict[str, Any]) -> None:
    _need_sbi()
    storage = runs["storage"]
    columns, checks = posterior_samples(
        "rs", storage, n=4000, observation=X_O, seed=1, return_checks=True
    )
    assert list(columns) == ["param.a", "param.b"] and len(columns["param.a"]) == 4000
    mean, std = _stats(columns)
    # analytic: N(x_o, 0.1^2 I); the likelihood was learned from prior draws
    assert np.abs(mean - X_O).max() < 0.05, mean
    assert 0.07 < std.min() and std.max() < 0.14, std
    assert checks["method"] == "nle" and checks["warnings"] == []
    gaps = sum(1 for e in history("rs", storage) if e.params["a"] > 1.8)
    assert checks["simulations"] == 300 - gaps and checks["left_out"] == gaps > 0
    assert checks["coverage"]["ok"] and checks["coverage"]["far_fraction"] < 0.3
    assert checks["observation"]["ok"] and checks["observation"]["outside"] == []
    # reproducible for a seed, other draws for another
    again = posterior_samples("rs", storage, n=4000, observation=X_O, seed=1)
    assert all(np.array_equal(again[c], columns[c]) for c in columns)
    other = posterior_samples("rs", storage, n=4000, observation=X_O, seed=2)
    assert not np.array_equal(other["param.a"], columns["param.a"])
    assert np.abs(_stats(other)[0] - mean).max() < 0.03  # the same posterior


def _main(*argv: str) -> int:
    try:
        return cli.main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def test_cmaes_posterior_at_its_target_by_cli_and_far_from_it(
    runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _need_sbi()
    storage = runs["storage"]
    assert len(history("cm", storage)) == 300
    (tmp_path / "x.json").write_text(json.dumps(X_O))
    out = tmp_path / "s.csv"
    code = _main("posterior", "--storage", storage, "--name", "cm", "-n", "2000",
                 "--observation", str(tmp_path / "x.json"), "-o", str(out))  # fmt: skip
    assert code == 0
    assert capsys.readouterr().err == f"wrote 2000 posterior draws to {out}\n"  # no warning
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["param.a", "param.b"] and len(rows) == 2001
    draws = np.array(rows[1:], dtype=float)
    # CMA-ES converged to x_o, and its generations on the way there put hundreds of
    # simulations within a few posterior widths of it: the likelihood is learned where the
    # posterior is, so its mean lands near the analytic one (x_o) and its width is of the
    # analytic size (0.1); the campaign's last generation alone is narrower than that
    assert np.abs(draws.mean(axis=0) - X_O).max() < 0.05, draws.mean(axis=0)
    assert 0.05 < draws.std(axis=0).min() and draws.std(axis=0).max() < 0.15
    # at an observation the campaign did not go near: the checks say so
    with pytest.warns(UserWarning) as record:
        _, checks = posterior_samples(
            "cm", storage, n=1000, observation=X_FAR, seed=0, return_checks=True
        )
    assert [str(w.message) for w in record] == checks["warnings"]
    assert checks["warnings"][0].startswith("coverage: ")
    assert not checks["coverage"]["ok"] and checks["coverage"]["far_fraction"] > 0.5
    assert not checks["observation"]["ok"]
    assert checks["observation"]["mahalanobis"] > checks["observation"]["mahalanobis_limit"]
    assert len(checks["warnings"]) >= 2


@pytest.mark.parametrize(
    ("name", "observation", "error"),
    [
        (
            "cm",
            None,
            "experiment 'cm' uses optimizer 'cmaes', which stores no observation: give "
            "--observation FILE (observation= in Python)",
        ),
        ("nostats", "x.json", "experiment 'nostats' has no evaluations with outputs.stats"),
        (
            "few",
            "x.json",
            "experiment 'few' has 20 usable simulations (ok, with 2 finite stats); a posterior "
            f"needs at least {likelihood_posterior.MIN_SIMULATIONS}",
        ),
        (
            "ints",
            "x.json",
            "experiment 'ints': a posterior is inferred for real parameters only; space.n is "
            "of type int",
        ),
        (
            "cm",
            "three.json",
            "--observation: the observation has 3 values; the stored stats have 2",
        ),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    runs: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    observation: str | None,
    error: str,
) -> None:
    (tmp_path / "x.json").write_text(json.dumps(X_O))
    (tmp_path / "three.json").write_text("[1, 2, 3]")
    args = [
        "posterior",
        "--storage",
        runs["storage"],
        "--name",
        name,
        "-o",
        str(tmp_path / "o.csv"),
    ]
    if observation is not None:
        args += ["--observation", str(tmp_path / observation)]
    code = _main(*args)
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and err == [f"metaloop: error: {error}"]
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(UserError, match="^experiment 'cm' uses optimizer 'cmaes'"):
        posterior_samples("cm", runs["storage"], n=5)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--format", "json", "-o", "o.csv"],
         "o.csv' names the csv format but --format is json; give a matching file name"),
        (["-o", "o.zip"], "-o: posterior draws are CSV or JSON; got '"),
    ],
)
def test_cli_posterior_output_name_and_format_must_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    """Refused before the store is opened or anything is written."""
    args = [a if not a.startswith("o.") else str(tmp_path / a) for a in args]
    code = _main("posterior", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--name", "x",
                 *args)  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and error in err[0], err
    assert err[0].startswith("metaloop: error: -o: ")
    assert list(tmp_path.iterdir()) == []
