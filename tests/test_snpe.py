"""optimizer: snpe (truncated sequential neural posterior estimation with sbi), summary
statistics as results, and ``metaloop posterior`` / ``api.posterior_samples``.

The task: ``theta`` uniform in ``[-2, 2]^2``, stats ``= theta + N(0, 0.1^2)`` (seeded per
evaluation), so the posterior at ``x_o`` is ``N(x_o, 0.1^2 I)`` (the prior's bounds are 15
standard deviations away).  Tests that train a network call ``need_module("sbi")`` and
``need_module("torch")`` (skip here, fail in CI); the checks of results and configs run
everywhere (the sbi check is stubbed where a config is validated without it).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from optdriver import InterruptAfter
from services import need_module

from metaloop import cli
from metaloop.api import Experiment, history, posterior_samples, resume
from metaloop.config import ConfigError, validate_config
from metaloop.drivers.loop import worker_setup
from metaloop.optimizees.results import parse_result
from metaloop.optimizers import snpe
from metaloop.optimizers.snpe import MISSING, SequentialNPE, load_observation
from metaloop.records import Status
from metaloop.space import Space
from metaloop.store import codec, open_store

X_O = [0.5, -0.3]
NOISE = 0.1
SIM = """
import numpy as np


def simulate(params, ctx):
    theta = np.array([params["a"], params["b"]])
    return {"outputs": {"stats": (theta + 0.1 * ctx.rng.standard_normal(2)).tolist()}}


def simulate_x(params, ctx):
    x = np.asarray(params["x"], dtype=float)
    return {"outputs": {"stats": (x + 0.1 * ctx.rng.standard_normal(x.shape)).tolist()}}
"""
SPACE = {"a": {"type": "real", "low": -2, "high": 2}, "b": {"type": "real", "low": -2, "high": 2}}


def _need_sbi() -> None:
    need_module("sbi", "pip install -e .[test]")
    need_module("torch", "pip install torch (the CPU build)")


def _config(tmp: Path, name: str, **optimizer: Any) -> dict[str, Any]:
    (tmp / "sim.py").write_text(SIM)
    return {
        "name": name,
        "seed": 3,
        "storage": f"sqlite:///{tmp / 'snpe.db'}",
        "optimizee": {"kind": "python", "target": f"{tmp / 'sim.py'}:simulate"},
        "space": SPACE,
        "optimizer": {"kind": "snpe", "observation": X_O, **optimizer},
        "executor": {"kind": "serial"},
    }


@pytest.fixture
def sbi_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config checks that do not train: as if sbi and torch were installed."""
    monkeypatch.setattr(snpe, "sbi_installed", lambda: True)


# -- results: summary statistics -------------------------------------------------------------
def test_stats_only_results_get_the_rms_distance_as_fitness() -> None:
    r = parse_result({"outputs": {"stats": [0.5, 0.1]}, "metrics": {"m": 1}}, 1, (0.5, -0.3))
    assert r.status is Status.OK and r.error is None
    assert r.fitness == (pytest.approx(math.sqrt((0.0 + 0.4**2) / 2), abs=1e-15),)
    assert r.metrics == {"m": 1} and r.outputs["stats"].tolist() == [0.5, 0.1]
    given = parse_result({"fitness": 7.0, "outputs": {"stats": [0, 0]}}, 1, (0.5, -0.3))
    assert given.status is Status.OK and given.fitness == (7.0,)  # a given fitness is kept


@pytest.mark.parametrize(
    ("stats", "error"),
    [
        ([0.1, float("nan")], "outputs.stats is not finite: [0.1, nan]"),
        ([0.1, float("inf")], "outputs.stats is not finite: [0.1, inf]"),
        ([0.1, 0.2, 0.3], "outputs.stats has 3 values; the observation has 2"),
        ([], "outputs.stats must be a sequence of numbers, got array([], dtype=float64)"),
        ("ab", "outputs.stats must be a sequence of numbers, got 'ab'"),
    ],
)
def test_bad_stats_are_invalid_with_one_line(stats: Any, error: str) -> None:
    for raw in ({"outputs": {"stats": stats}}, {"fitness": 1.0, "outputs": {"stats": stats}}):
        r = parse_result(raw, 1, (0.5, -0.3))
        assert (r.status, r.fitness, r.error) == (Status.INVALID, None, error)


def test_without_an_observation_a_missing_fitness_is_invalid_as_before() -> None:
    raw = {"outputs": {"stats": [0.5, -0.3]}}
    r = parse_result(raw, 1)
    assert r.status is Status.INVALID
    assert r.error == f"result mapping has no 'fitness' key: {raw!r}"
    assert parse_result({"outputs": {"x": 1}}, 1, (0.5,)).error.startswith(
        "result mapping has no 'fitness' key"
    )


def test_only_an_observation_optimizer_gives_the_workers_its_observation(
    tmp_path: Path, sbi_found: None
) -> None:
    config = validate_config(_config(tmp_path, "w"))
    assert worker_setup(config, 1).observation == tuple(X_O)
    other = _config(tmp_path, "r")
    other.update(optimizer={"kind": "random"}, generations=1)
    assert worker_setup(validate_config(other), 1).observation is None


# -- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ({"type": "int", "low": 0, "high": 3}, "int"),
        ({"type": "choice", "values": ["x", "y"]}, "choice"),
    ],
)
def test_ints_and_choices_are_refused_in_one_line(
    tmp_path: Path, spec: dict[str, Any], kind: str
) -> None:
    cfg = _config(tmp_path, "c")
    cfg["space"] = {**SPACE, "n": spec}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert err.value.lines == [
        f"optimizer: snpe infers real parameters only: space.n is of type {kind} "
        "(make it type: real, or use another optimizer kind)"
    ]


def test_without_sbi_the_config_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snpe, "sbi_installed", lambda: False)
    with pytest.raises(ConfigError) as err:
        validate_config(_config(tmp_path, "c"))
    assert err.value.lines == [MISSING]
    assert MISSING == "optimizer 'snpe' needs sbi and torch: pip install 'metaloop[sbi]'"


def test_observation_from_json_and_csv_files_relative_to_the_config(
    tmp_path: Path, sbi_found: None
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "xo.json").write_text("[0.5, -0.3]")
    (tmp_path / "data" / "xo.csv").write_text("0.5, -0.3\n")
    for name in ("xo.json", "xo.csv"):
        cfg = _config(tmp_path, "f", observation=f"data/{name}")
        config = validate_config(cfg, base_dir=tmp_path)
        assert config.model.optimizer["observation"] == X_O  # stored resolved
    assert load_observation("xo.csv", tmp_path / "data") == X_O


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("none.json", None, "no such file"),
        ("bad.json", "[0.5,", "not JSON (Expecting value, line 1)"),
        ("words.json", '["a", 1]', "expected a JSON list of numbers"),
        ("dict.json", '{"a": 1}', "expected a JSON list of numbers"),
        ("nan.json", "[NaN]", "expected a JSON list of numbers"),
        ("rows.csv", "1,2\n3,4\n", "expected one row of numbers (CSV), got 2 rows"),
        ("words.csv", "1,x\n", "expected one row of numbers (CSV)"),
        ("empty.csv", "", "expected one row of numbers (CSV), got 0 rows"),
    ],
)
def test_bad_observation_files_are_one_line(
    tmp_path: Path, sbi_found: None, name: str, text: str | None, error: str
) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as err:
        validate_config(_config(tmp_path, "f", observation=name), base_dir=tmp_path)
    assert err.value.lines == [f"optimizer.observation: {tmp_path / name}: {error}"]


def test_snpe_ends_by_itself_refuses_injection_and_async(tmp_path: Path, sbi_found: None) -> None:
    cfg = _config(tmp_path, "a")  # no stopping criterion: it is done after its rounds
    validate_config(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config({**cfg, "mode": "async"})
    assert any(line.startswith("mode: async works with") for line in err.value.lines)
    assert SequentialNPE.refuses_injection is not None
    assert not SequentialNPE.takes_initial_population()


# -- the optimizer itself ----------------------------------------------------------------------
def _simulate(X: np.ndarray, seed: int) -> list[dict[str, Any]]:
    theta = X * 4 - 2
    S = theta + NOISE * np.random.default_rng(seed).standard_normal(theta.shape)
    return [{"stats": s} for s in S]


@pytest.mark.parametrize("method", ["apt", "tsnpe"])
def test_state_json_round_trip_asks_the_same_bit_for_bit(method: str) -> None:
    _need_sbi()
    space = Space.from_config(SPACE)
    params = {"observation": X_O, "pop_size": 40, "rounds": 3, "max_num_epochs": 5,
              "method": method}  # fmt: skip
    opt = SequentialNPE(space, params, seed=5)
    for r in range(3):
        X = opt.ask()
        state = codec.loads(codec.dumps(opt.state()))  # exact, pickle-free
        again = SequentialNPE(space, state["params"], seed=5)
        again.load_state(state)
        assert np.array_equal(again.ask(), X), r
        assert np.array_equal(opt.ask(), X), r  # asking twice: the same
        F = np.zeros((len(X), 1))
        F[3] = -np.inf  # a failed simulation: left out of the training data
        opt.tell(X, F, _simulate(X, r))
        assert opt.diagnostics()["dropped"] == 1
    assert opt.done and opt.generation == 3
    state = codec.loads(codec.dumps(opt.state()))
    again = SequentialNPE(space, state["params"], seed=5)
    again.load_state(state)
    assert np.array_equal(again.sample_posterior(50, 9), opt.sample_posterior(50, 9))
    assert state["algorithm"]["theta"].shape == (3 * 39, 2)


@pytest.mark.parametrize("method", ["apt", "tsnpe"])
def test_later_rounds_draw_near_the_posterior(method: str) -> None:
    _need_sbi()
    space = Space.from_config(SPACE)
    opt = SequentialNPE(space, {"observation": X_O, "pop_size": 150, "method": method}, seed=2)
    X0 = opt.ask()
    opt.tell(X0, np.zeros((150, 1)), _simulate(X0, 0))
    assert opt.diagnostics()["acceptance"] == 1.0  # round 0: the prior itself
    X1 = opt.ask()
    # round 0 covers the cube; round 1 stays near x_o (0.625, 0.425 in the unit cube)
    assert X0.std(axis=0).min() > 0.2
    assert np.abs(X1.mean(axis=0) - [0.625, 0.425]).max() < 0.05
    assert X1.std(axis=0).max() < 0.12
    assert ((X1 >= 0) & (X1 <= 1)).all()
    opt.tell(X1, np.zeros((150, 1)), _simulate(X1, 1))
    diag = opt.diagnostics()
    if method == "tsnpe":  # the truncated prior: uniform inside a region of the cube
        assert 0.0 < diag["acceptance"] < 0.5
    else:  # the posterior itself (the posterior of round 0: sd 0.025 in the cube, about)
        assert 0.9 < diag["acceptance"] <= 1.0 and diag["sampler"] == "rejection"
        assert X1.std(axis=0).max() < 0.06


def test_the_atomic_loss_is_a_softmax_over_the_batch() -> None:
    """With as many atoms as rows, row i's loss is -log of the softmax of
    ``log q(theta_j | x_i)`` over every j of the batch, at j = i (no draws involved)."""
    _need_sbi()
    import torch

    from metaloop.optimizers import npe_net

    rng = np.random.default_rng(0)
    theta, x = rng.random((6, 2)), rng.standard_normal((6, 2))
    spec = npe_net.NetSpec("maf", 10, 2, 1)
    net = npe_net.build(spec, theta, x, seed=1)
    T, X = torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        got = npe_net.atomic_loss(net, T, X, atoms=6).double().numpy()
        lp = np.array([[float(net.log_prob(T[j][None, None], X[i][None])) for j in range(6)]
                       for i in range(6)])  # fmt: skip
    expected = -(np.diag(lp) - np.log(np.exp(lp).sum(axis=1)))
    assert np.allclose(got, expected, atol=1e-4), (got, expected)
    assert (got > 0).all()
    one = npe_net.atomic_loss(net, T[:1], X[:1], atoms=6)  # one row: plain likelihood
    assert np.allclose(one.detach().numpy(), net.loss(T[:1], X[:1]).detach().numpy())


# -- through the API: accuracy, posterior samples, the CLI -------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One linear-Gaussian run (2 rounds x 200 simulations) and a random-search experiment."""
    _need_sbi()
    tmp = tmp_path_factory.mktemp("snpe")
    cfg = _config(tmp, "lg", pop_size=200, rounds=2, training_batch_size=50)
    summary = Experiment(cfg).run()
    other = _config(tmp, "rs")
    other.update(optimizer={"kind": "random", "pop_size": 4}, generations=1)
    other["optimizee"] = {"kind": "function", "name": "sphere", "dims": 2}
    del other["space"]
    Experiment(other).run()
    return {"tmp": tmp, "storage": cfg["storage"], "summary": summary}


def test_the_posterior_of_a_linear_gaussian_task(trained: dict[str, Any]) -> None:
    summary = trained["summary"]
    assert (summary.status, summary.stop_reason, summary.n_evaluations) == (
        "finished",
        "optimizer_done",
        400,
    )
    evals = history("lg", trained["storage"])
    assert all(e.status is Status.OK for e in evals)
    for e in evals[:5]:  # stats only: the fitness is the RMS distance to x_o
        d = math.sqrt(np.mean((np.asarray(e.outputs["stats"]) - X_O) ** 2))
        assert e.fitness == (pytest.approx(d, rel=1e-12),)
    assert summary.best is not None and summary.best.fitness[0] == min(
        e.fitness[0] for e in evals
    )  # the best evaluation is the simulation closest to the data
    columns = posterior_samples("lg", trained["storage"], n=4000, seed=1)
    assert list(columns) == ["param.a", "param.b"]
    mean = [columns["param.a"].mean(), columns["param.b"].mean()]
    std = [columns["param.a"].std(), columns["param.b"].std()]
    # analytic posterior: N(x_o, 0.1^2) per coordinate
    assert np.abs(np.subtract(mean, X_O)).max() < 0.06, mean
    assert 0.06 < min(std) and max(std) < 0.15, std
    again = posterior_samples("lg", trained["storage"], n=4000, seed=1)
    assert np.array_equal(again["param.a"], columns["param.a"])  # seeded
    assert not (Path.cwd() / "sbi-logs").exists()


def _main(*argv: str) -> int:
    """The exit code of ``metaloop ARGV`` (in this process; argparse's errors exit)."""
    try:
        return cli.main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def test_cli_posterior_writes_the_samples(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "samples.csv"
    code = _main("posterior", "--storage", trained["storage"], "--name", "lg", "-n", "300",
                 "--seed", "4", "-o", str(out))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().err == f"wrote 300 posterior draws to {out}\n"
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["param.a", "param.b"] and len(rows) == 301
    values = np.array(rows[1:], dtype=float)
    assert np.abs(values.mean(axis=0) - X_O).max() < 0.1
    out_json = tmp_path / "samples.json"
    _main("posterior", "--storage", trained["storage"], "--name", "lg", "-n", "300",
          "--seed", "4", "-o", str(out_json))  # fmt: skip  (JSON: the file's suffix)
    records = json.loads(out_json.read_text())
    assert len(records) == 300 and np.allclose([r["param.a"] for r in records], values[:, 0])


def test_cli_posterior_at_another_observation_warns(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "xo.json").write_text("[-1.0, 1.0]")
    out = tmp_path / "s.csv"
    code = _main("posterior", "--storage", trained["storage"], "--name", "lg", "-n", "20",
                 "--observation", str(tmp_path / "xo.json"), "-o", str(out))  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert code == 0 and out.exists()
    assert err[0] == (
        "metaloop: warning: the posterior of 'lg' was trained over 2 rounds for its own "
        "observation; at another observation it is not valid"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--name", "nope"], None),
        (["--name", "rs"], "experiment 'rs' has no evaluations with outputs.stats"),
        (
            ["--name", "lg", "--observation", "{tmp}/three.json"],
            "--observation: the observation has 3 values; the posterior was trained on 2 "
            "statistics",
        ),
        (
            ["--name", "lg", "--observation", "{tmp}/missing.csv"],
            "--observation: {tmp}/missing.csv: no such file",
        ),
        (["--name", "lg", "-n", "0"], "argument -n: expected a positive integer, got 0"),
        (["--name", "lg", "-o", "{tmp}"], "-o: {tmp} is a directory; expected a file name"),
    ],
)
def test_cli_posterior_bad_input_is_one_line_exit_2(
    trained: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    error: str | None,
) -> None:
    (tmp_path / "three.json").write_text("[1, 2, 3]")
    args = [a.format(tmp=tmp_path) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.csv")]
    code = _main("posterior", "--storage", trained["storage"], *args)
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert "Traceback" not in err[0]
    if error is not None:
        assert err[0] == f"metaloop: error: {error.format(tmp=tmp_path)}"
    else:
        assert "nope" in err[0]
    assert not (tmp_path / "out.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.json"]


def test_api_posterior_bad_input(trained: dict[str, Any]) -> None:
    from metaloop.errors import UserError

    for n in (0, -3, 2.5, True):
        with pytest.raises(UserError, match="^-n: the number of samples must be a positive"):
            posterior_samples("lg", trained["storage"], n=n)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="^--observation: the observation has 1 values"):
        posterior_samples("lg", trained["storage"], n=5, observation=[1.0])
    with pytest.warns(UserWarning, match="trained over 2 rounds"):
        posterior_samples("lg", trained["storage"], n=5, observation=[0.0, 0.0])


# -- resume ------------------------------------------------------------------------------------
def _array_config(tmp: Path, name: str) -> dict[str, Any]:
    cfg = _config(tmp, name, pop_size=40, rounds=3, max_num_epochs=10, truncation_samples=1000)
    cfg["space"] = {"x": {"type": "real", "low": -2, "high": 2, "shape": [2]}}
    cfg["optimizee"]["target"] = f"{tmp / 'sim.py'}:simulate_x"
    return cfg


def _posteriors(name: str, storage: str) -> dict[int, str]:
    from metaloop.dashboard.posterior import by_round

    with open_store(storage, readonly=True) as store:
        events = store.events(store.require_experiment(name).id, kinds=("posterior",))
    return {r: codec.dumps(data) for r, data in by_round(events).items()}


def test_resume_after_an_interrupt_equals_an_uninterrupted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _need_sbi()
    ref = _array_config(tmp_path, "ref")
    Experiment(ref).run()
    storage = ref["storage"]

    def table(name: str) -> list[tuple[Any, ...]]:
        return [(e.generation, e.index, repr(e.params), e.fitness) for e in history(name, storage)]

    reference = table("ref")
    assert len(reference) == 120
    for cut in (17, 95):  # in round 0 (no network yet), in round 2 (a trained one)
        name = f"cut{cut}"
        summary = Experiment(_array_config(tmp_path, name)).run(observer=InterruptAfter(cut))
        assert summary.status == "interrupted" and len(history(name, storage)) == cut
        assert resume(name, storage).status == "finished"
        assert table(name) == reference
        # the posterior events (the dashboard's pair plots): the last per round is the same
        assert _posteriors(name, storage) == _posteriors("ref", storage)
    # an array parameter: columns param.x.0, param.x.1
    out = tmp_path / "x.csv"
    capsys.readouterr()
    assert _main("posterior", "--storage", storage, "--name", "ref", "-n", "7", "-o", str(out)) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["param.x.0", "param.x.1"] and len(rows) == 8


def test_a_posterior_that_leaked_out_of_the_prior_is_slice_sampled_inside_it() -> None:
    """An estimator trained on x = theta (+ noise) asked at x_o far beyond the cube puts
    nearly all of its mass outside the prior: ``sample`` then slice-samples q within the
    cube (rejection would need hundreds of raw draws per kept one) and still gives n draws,
    piled up at the face nearest x_o; inside the cube, rejection is used as before."""
    _need_sbi()
    from metaloop.optimizers import npe_net

    rng = np.random.default_rng(0)
    theta = rng.random((500, 1))
    x = theta + 0.05 * rng.standard_normal(theta.shape)
    net = npe_net.build(npe_net.NetSpec("maf", 20, 2, 1), theta, x, seed=0)
    how = npe_net.Training(100, 5e-3, 0.1, 5, 60)
    npe_net.train(net, theta, x, how, np.random.default_rng(1), seed=1)
    far, near = np.array([4.0]), np.array([0.5])
    assert npe_net.inside_share(net, 1, far, seed=3) < npe_net.MIN_INSIDE
    assert npe_net.inside_share(net, 1, near, seed=3) > 0.9
    draws = npe_net.sample(net, 1, far, 400, seed=4)
    assert draws.shape == (400, 1) and ((draws >= 0) & (draws <= 1)).all()
    assert np.median(draws) > 0.9  # the density inside grows towards theta = 1
    again = npe_net.sample(net, 1, far, 400, seed=4)
    assert np.array_equal(draws, again)  # seeded
    inside = npe_net.sample(net, 1, near, 400, seed=4)
    assert abs(np.median(inside) - 0.5) < 0.1 and inside.std() < 0.15
