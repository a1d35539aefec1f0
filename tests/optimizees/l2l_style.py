"""Optimizees written the way L2L optimizees are (constructor ``(traj, parameters)``,
``create_individual``, ``bounding_func``, ``simulate(traj)`` returning a fitness tuple), with
only the import pointing at metaloop's compatibility layer."""

from collections import namedtuple

import numpy as np

from metaloop.compat.l2l import Optimizee

ShiftedSphereParameters = namedtuple("ShiftedSphereParameters", ["seed", "shift", "limit"])


class ShiftedSphere(Optimizee):
    """Minimize ``|coords - shift|^2 + (gain - 1)^2``; ``coords`` clipped into
    ``[-limit, limit]`` by ``bounding_func``, ``gain`` not bounded (its range is inferred from
    samples).  Returns ``(cost, |coords|)``, two objectives as L2L allows."""

    def __init__(self, traj, parameters):
        super().__init__(traj)
        self.seed = parameters.seed
        self.shift = np.asarray(parameters.shift, dtype=float)
        self.limit = float(parameters.limit)
        traj.f_add_parameter_to_group("individual", "seed", self.seed)
        traj.f_add_parameter_group("sphere", "settings read back in simulate")
        traj.f_add_parameter_to_group("sphere", "offset", 0.25)
        traj.f_add_parameter("dims", len(self.shift))

    def create_individual(self):
        dims = len(self.shift)
        return {
            "coords": np.random.uniform(-self.limit, self.limit, dims),
            "gain": float(np.random.normal(1.0, 0.5)),
        }

    def bounding_func(self, individual):
        individual["coords"] = np.clip(individual["coords"], -self.limit, self.limit)
        return individual

    def simulate(self, traj):
        coords = traj.individual.coords
        gain = traj.individual.gain
        assert traj.dims == len(coords)
        assert traj.parameters.individual.seed == self.seed
        cost = float(np.sum((coords - self.shift) ** 2) + (gain - 1.0) ** 2)
        return (cost + traj.parameters.sphere.offset, float(np.linalg.norm(coords)))


class Rounded(Optimizee):
    """A bounding function that is not a clip: values are rounded to ``step``."""

    def __init__(self, traj, parameters):
        super().__init__(traj)
        self.step = parameters.step

    def create_individual(self):
        return {"x": float(np.random.uniform(-2.0, 2.0))}

    def bounding_func(self, individual):
        individual["x"] = float(np.round(individual["x"] / self.step) * self.step)
        return individual

    def simulate(self, traj):
        return ((traj.individual.x - 0.3) ** 2,)


class WithData:
    """Written against L2L's own base class, which only registers the ``individual`` group:
    this one does the same by hand, and takes a data array besides the trajectory, so it is
    built in Python and handed over with ``wrap``."""

    def __init__(self, traj, data, parameters):
        traj.f_add_parameter_group("individual", "")
        traj.f_add_parameter("noise", parameters.noise)
        self.data = np.asarray(data, dtype=float)

    def create_individual(self):
        return {"w": np.random.normal(0.0, 1.0, self.data.shape[1])}

    def bounding_func(self, individual):
        individual["w"] = np.clip(individual["w"], -3.0, 3.0)
        return individual

    def simulate(self, traj):
        w = traj.individual.w
        return (float(np.mean((self.data @ w - 1.0) ** 2)) + traj.noise,)


class IntIndividual(Optimizee):
    def __init__(self, traj, parameters):
        super().__init__(traj)

    def create_individual(self):
        return {"n": 3}

    def simulate(self, traj):
        return (float(traj.individual.n),)


class Constant(Optimizee):
    def __init__(self, traj, parameters):
        super().__init__(traj)

    def create_individual(self):
        return {"c": 1.5}

    def simulate(self, traj):
        return (traj.individual.c,)
