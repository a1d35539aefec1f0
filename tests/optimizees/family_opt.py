"""Optimizees with task families for tests/test_families.py."""


class Shifts:
    """Tasks: a target value t and a weight, drawn from the generator it is given."""

    def __init__(self, spread=1.0):
        self.spread = spread

    def sample(self, rng):
        return {"t": float(rng.normal(0.0, self.spread)), "weight": float(rng.uniform(1, 2))}


class Learner:
    family = Shifts()

    def evaluate(self, params, ctx):
        task = ctx.task
        cost = task["weight"] * (params["x"] - task["t"]) ** 2
        if task["t"] > 50:
            raise ValueError("task out of range")
        return {"fitness": cost, "metrics": {"t": task["t"], "index": ctx.task_index}}


class TwoObjectives(Learner):
    def evaluate(self, params, ctx):
        t = ctx.task["t"]
        return [(params["x"] - t) ** 2, abs(params["x"])]


class NoFamily:
    def evaluate(self, params, ctx):
        return 0.0


def one_argument(params):
    return 0.0
