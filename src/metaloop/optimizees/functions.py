"""Built-in benchmark functions used as optimizees (``{kind: function, name: ..., dims: ...}``).

All functions are *costs* to be minimised.  Each is vectorised: ``f(X)`` takes ``X`` of shape
``(n, d)`` and returns ``n`` costs.  The suite restates the 15 functions of the L2L framework's
function generator (formulas re-derived from the literature, no code copied) plus a few
classic extras.

Names (lookup is case-insensitive):

* generic families, any ``dims``: ``rastrigin``, ``rosenbrock`` (d >= 2), ``ackley``,
  ``sphere``, ``ellipsoid``, ``rotated_ellipsoid``, ``griewank``, ``schwefel``,
  ``styblinski_tang``, ``levy``, ``michalewicz``, ``permutation``, ``easom``;
* 2-D only: ``chasm``, ``gauss``, ``shekel``, ``langermann``, ``3gaussians``;
* the names of the L2L benchmark index 0..14, which fix ``dims`` (``Rastrigin2d``, ...,
  ``3Gaussians2d``: see :data:`L2L_BENCHMARKS`).

Bounds (per coordinate): the generic names use the standard literature domains (rastrigin,
sphere, ellipsoid, rotated_ellipsoid +-5.12; ackley +-32.768; rosenbrock +-5; griewank +-600;
schwefel +-500; styblinski_tang +-5; levy +-10; michalewicz [0, pi]; permutation [-d, d];
easom +-10).  The L2L alias names keep L2L's bounds (Rastrigin [-5, 5], Rosenbrock and Ackley
[-2, 2], ...) so L2L users get the search space they had.  The 2-D-only functions have no
standard domain and use L2L's (chasm [-2, 2], gauss and 3gaussians [-5, 5], shekel and
langermann [0, 10]).

Differences from L2L: L2L's Shekel adds ``c_i`` once per coordinate (``d * c_i`` in total);
here it is the standard Shekel function, ``c_i`` added once per term.  Schwefel uses the exact
constant 418.98288727... (instead of the rounded 418.9829) so its minimum is 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import numpy as np

from metaloop.optimizees.ellipsoids import ellipsoid, rotated_ellipsoid

Array = np.ndarray
Bounds = Callable[[int], tuple[float, float]]


@dataclass(frozen=True)
class BenchmarkFunction:
    """A vectorised cost function with its domain and (where known) its global minimum.

    ``f`` maps ``X`` of shape ``(n, d)`` to costs of shape ``(n,)``; ``bounds(d)`` is the
    per-coordinate domain; ``optimum_value(d)`` / ``optimum_x(d)`` give the global minimum
    (``None`` where unknown).  ``fixed_dims`` is set for functions defined in one dimension only.
    """

    name: str
    f: Callable[[Array], Array]
    bounds: Bounds
    optimum_value: Callable[[int], float | None]
    optimum_x: Callable[[int], Array | None]
    fixed_dims: int | None = None
    min_dims: int = 1
    description: str = field(default="", compare=False)

    def __call__(self, X: Array) -> Array:
        """Costs of the rows of ``X`` (a single point of shape ``(d,)`` is also accepted)."""
        return self.f(np.atleast_2d(np.asarray(X, dtype=float)))


# ---------------------------------------------------------------------------------------------
# Small helpers


def _const_bounds(low: float, high: float) -> Bounds:
    return lambda d: (float(low), float(high))


def _const_value(value: float | None) -> Callable[[int], float | None]:
    return lambda d: value


def _filled(value: float) -> Callable[[int], Array]:
    return lambda d: np.full(d, float(value))


def _bisect(g: Callable[[float], float], a: float, b: float, iters: int = 200) -> float:
    """A root of ``g`` in ``[a, b]`` (``g(a)`` and ``g(b)`` must differ in sign)."""
    ga = g(a)
    for _ in range(iters):
        m = 0.5 * (a + b)
        gm = g(m)
        if gm == 0.0:
            return m
        if (gm > 0) == (ga > 0):
            a, ga = m, gm
        else:
            b = m
    return 0.5 * (a + b)


def _indices(d: int) -> Array:
    return np.arange(1, d + 1, dtype=float)


# ---------------------------------------------------------------------------------------------
# Generic families


def rastrigin(X: Array) -> Array:
    """``10 d + sum(x^2 - 10 cos(2 pi x))``; minimum 0 at 0."""
    return 10.0 * X.shape[1] + np.sum(X**2 - 10.0 * np.cos(2.0 * np.pi * X), axis=1)


def rosenbrock(X: Array) -> Array:
    """``sum_{i<d} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``; minimum 0 at (1, ..., 1)."""
    a, b = X[:, :-1], X[:, 1:]
    return np.sum(100.0 * (b - a**2) ** 2 + (1.0 - a) ** 2, axis=1)


def ackley(X: Array) -> Array:
    """``20 + e - 20 exp(-0.2 sqrt(mean x^2)) - exp(mean cos(2 pi x))``; minimum 0 at 0."""
    r = np.sqrt(np.mean(X**2, axis=1))
    c = np.mean(np.cos(2.0 * np.pi * X), axis=1)
    return 20.0 + math.e - 20.0 * np.exp(-0.2 * r) - np.exp(c)


def sphere(X: Array) -> Array:
    """``sum x^2``; minimum 0 at 0."""
    return np.sum(X**2, axis=1)


def griewank(X: Array) -> Array:
    """``1 + sum x^2 / 4000 - prod cos(x_i / sqrt(i))``; minimum 0 at 0."""
    root_i = np.sqrt(_indices(X.shape[1]))
    return 1.0 + np.sum(X**2, axis=1) / 4000.0 - np.prod(np.cos(X / root_i), axis=1)


# x* maximises x sin(sqrt(x)): d/dx = 0  <=>  tan(u) = -u/2 with u = sqrt(x), u in (6.5 pi, 7 pi)
_SCHWEFEL_U = _bisect(lambda u: math.sin(u) + 0.5 * u * math.cos(u), 6.5 * math.pi, 7 * math.pi)
SCHWEFEL_X = _SCHWEFEL_U**2  # 420.9687...
SCHWEFEL_C = SCHWEFEL_X * math.sin(_SCHWEFEL_U)  # 418.98288727...


def schwefel(X: Array) -> Array:
    """``418.9829 d - sum x sin(sqrt|x|)``; minimum 0 at x_i = 420.9687."""
    return SCHWEFEL_C * X.shape[1] - np.sum(X * np.sin(np.sqrt(np.abs(X))), axis=1)


# stationary point of x^4 - 16 x^2 + 5 x: 4 x^3 - 32 x + 5 = 0, the root near -2.9
STYBLINSKI_TANG_X = _bisect(lambda x: 4 * x**3 - 32 * x + 5, -3.0, -2.8)
STYBLINSKI_TANG_PER_DIM = 0.5 * (
    STYBLINSKI_TANG_X**4 - 16 * STYBLINSKI_TANG_X**2 + 5 * STYBLINSKI_TANG_X
)  # -39.16616...


def styblinski_tang(X: Array) -> Array:
    """``sum (x^4 - 16 x^2 + 5 x) / 2``; minimum -39.16617 d at x_i = -2.903534."""
    return 0.5 * np.sum(X**4 - 16.0 * X**2 + 5.0 * X, axis=1)


def levy(X: Array) -> Array:
    """Levy function with ``w = 1 + (x - 1) / 4``; minimum 0 at (1, ..., 1)."""
    W = 1.0 + (X - 1.0) / 4.0
    first = np.sin(np.pi * W[:, 0]) ** 2
    mid = np.sum(
        (W[:, :-1] - 1.0) ** 2 * (1.0 + 10.0 * np.sin(np.pi * W[:, :-1] + 1.0) ** 2), axis=1
    )
    last = (W[:, -1] - 1.0) ** 2 * (1.0 + np.sin(2.0 * np.pi * W[:, -1]) ** 2)
    return first + mid + last


def michalewicz(X: Array, m: float = 10.0) -> Array:
    """``-sum sin(x_i) sin(i x_i^2 / pi)^(2m)`` on ``[0, pi]^d``."""
    i = _indices(X.shape[1])
    return -np.sum(np.sin(X) * np.sin(i * X**2 / np.pi) ** (2.0 * m), axis=1)


def _michalewicz_term(x: float, k: int, m: float) -> float:
    return -math.sin(x) * math.sin(k * x * x / math.pi) ** (2.0 * m)


@lru_cache(maxsize=64)
def _michalewicz_argmin(d: int, m: float = 10.0) -> tuple[float, ...]:
    """Global minimiser on ``[0, pi]^d``, found numerically.

    The function is separable, so each coordinate is minimised on its own: a dense grid picks
    the best bracket, golden-section search refines it.
    """
    grid = np.linspace(0.0, np.pi, 200_001)
    step = grid[1] - grid[0]
    best = np.empty(d)
    for k in range(1, d + 1):
        term = -np.sin(grid) * np.sin(k * grid**2 / np.pi) ** (2.0 * m)
        j = int(np.argmin(term))
        a, b = max(grid[j] - step, 0.0), min(grid[j] + step, np.pi)
        best[k - 1] = _golden(partial(_michalewicz_term, k=k, m=m), a, b)
    return tuple(best.tolist())


def _golden(g: Callable[[float], float], a: float, b: float, iters: int = 80) -> float:
    """Minimiser of a unimodal ``g`` on ``[a, b]`` by golden-section search."""
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    c, e = b - inv_phi * (b - a), a + inv_phi * (b - a)
    gc, ge = g(c), g(e)
    for _ in range(iters):
        if gc < ge:
            b, e, ge = e, c, gc
            c = b - inv_phi * (b - a)
            gc = g(c)
        else:
            a, c, gc = c, e, ge
            e = a + inv_phi * (b - a)
            ge = g(e)
    return 0.5 * (a + b)


def permutation(X: Array, beta: float = 0.005) -> Array:
    """``sum_k [sum_i (i^k + beta) ((x_i / i)^k - 1)]^2``; minimum 0 at x_i = i."""
    d = X.shape[1]
    i = _indices(d)
    k = _indices(d)[:, None]  # (d, 1): one row per power k
    coeff = i[None, :] ** k + beta  # (k, i)
    ratio = (X[:, None, :] / i) ** k[None, :, :] - 1.0  # (n, k, i)
    inner = np.sum(coeff[None, :, :] * ratio, axis=2)  # (n, k)
    return np.sum(inner**2, axis=1)


def easom(X: Array) -> Array:
    """``-prod cos(x_i) exp(-sum (x_i - pi)^2)`` (L2L's d-dimensional Easom)."""
    return -np.prod(np.cos(X), axis=1) * np.exp(-np.sum((X - np.pi) ** 2, axis=1))


# Odd d: at (pi, ..., pi) the product of cosines is -1 (a maximum).  The minimum moves one
# coordinate to pi + t, where cos(t) exp(-t^2) is smallest: sin t + 2 t cos t = 0.
_EASOM_T = _bisect(lambda t: math.sin(t) + 2.0 * t * math.cos(t), math.pi / 2, math.pi)


def _easom_opt_value(d: int) -> float:
    return -1.0 if d % 2 == 0 else math.cos(_EASOM_T) * math.exp(-(_EASOM_T**2))


def _easom_opt_x(d: int) -> Array:
    x = np.full(d, math.pi)
    if d % 2 == 1:
        x[0] += _EASOM_T
    return x


# ---------------------------------------------------------------------------------------------
# 2-D functions


def chasm(X: Array) -> Array:
    """``1000 |x0| / (1000 |x0| + 1) + 0.01 |x1|``; minimum 0 at 0."""
    a = 1000.0 * np.abs(X[:, 0])
    return a / (a + 1.0) + 0.01 * np.abs(X[:, 1])


def neg_gaussian(X: Array, mean: Array, cov: Array) -> Array:
    """Negated multivariate normal density; minimum ``-1 / sqrt(det(2 pi cov))`` at ``mean``."""
    diff = X - mean
    quad = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    return -np.exp(-0.5 * quad) / np.sqrt(np.linalg.det(2.0 * np.pi * cov))


GAUSS_MEAN = np.array([-1.0, -1.0])
GAUSS_COV = np.array([[1.5, 0.1], [0.1, 0.3]])
THREE_GAUSSIANS = (
    (np.array([-1.0, -1.0]), np.array([[1.5, 0.1], [0.1, 0.3]])),
    (np.array([1.0, 1.0]), np.array([[0.25, 0.3], [0.3, 1.0]])),
    (np.array([2.0, -2.0]), np.array([[0.5, 0.25], [0.25, 1.3]])),
)


def three_gaussians(X: Array) -> Array:
    """Sum of the three negated Gaussian densities of L2L's ``3Gaussians2d``."""
    return sum(neg_gaussian(X, mean, cov) for mean, cov in THREE_GAUSSIANS)


SHEKEL_A = np.array([[3, 5], [5, 2], [2, 1], [3, 3], [2, 7], [1, 4], [7, 9]], dtype=float)
SHEKEL_C = 0.1 * np.array([1, 2, 5, 2, 3, 1, 1], dtype=float)


def shekel(X: Array, A: Array = SHEKEL_A, c: Array = SHEKEL_C) -> Array:
    """Standard Shekel: ``-sum_i 1 / (sum_j (x_j - A_ij)^2 + c_i)``.

    L2L adds ``c_i`` inside the sum over coordinates (``d * c_i``); we add it once per term.
    """
    sq = np.sum((X[:, None, :] - A[None, :, :]) ** 2, axis=2)  # (n, terms)
    return -np.sum(1.0 / (sq + c), axis=1)


LANGERMANN_A = np.array([[3, 5], [5, 2], [2, 1], [1, 4], [7, 9]], dtype=float)
LANGERMANN_C = np.array([1, 2, 5, 2, 3], dtype=float)


def langermann(X: Array, A: Array = LANGERMANN_A, c: Array = LANGERMANN_C) -> Array:
    """``sum_i c_i exp(-r_i / pi) cos(pi r_i)`` with ``r_i = sum_j (x_j - A_ij)^2``."""
    r = np.sum((X[:, None, :] - A[None, :, :]) ** 2, axis=2)  # (n, terms)
    return np.sum(c * np.exp(-r / np.pi) * np.cos(np.pi * r), axis=1)


# Global minimisers of the 2-D functions without a closed form, computed numerically offline
# (2001 x 2001 grid, then Nelder-Mead + BFGS from the 20 best grid points); the optimum value
# is the function at that point.  Langermann keeps L2L's sign (+sum): its minimum is -4.1558;
# the often quoted -5.1621 at (2.003, 1.006) belongs to the negated variant.
SHEKEL_X = np.array([2.998995797030497, 4.998927114836267])  # -10.7871216
LANGERMANN_X = np.array([2.793402208585251, 1.5972325019034563])  # -4.1558093
THREE_GAUSSIANS_X = np.array([0.9990573432951984, 0.9950994064128518])  # -0.3984750


def _at_point(fn: Callable[[Array], Array], x: Array) -> Callable[[int], float]:
    return lambda d: float(fn(x[None, :])[0])  # (computed when asked: nothing at import)


def _point(x: Array) -> Callable[[int], Array]:
    return lambda d: x.copy()


# ---------------------------------------------------------------------------------------------
# Registry


def _known(fn: Callable[[Array], Array], x: Array) -> dict[str, Any]:
    """A 2-D function's optimum at the numerically found point ``x``."""
    return {"optimum_value": _at_point(fn, x), "optimum_x": _point(x), "fixed_dims": 2}


def _zero_at(value: float) -> dict[str, Any]:
    return {"optimum_value": _const_value(0.0), "optimum_x": _filled(value)}


_GENERIC: dict[str, BenchmarkFunction] = {
    bf.name: bf
    for bf in [
        BenchmarkFunction("rastrigin", rastrigin, _const_bounds(-5.12, 5.12), **_zero_at(0.0)),
        BenchmarkFunction(
            "rosenbrock", rosenbrock, _const_bounds(-5.0, 5.0), **_zero_at(1.0), min_dims=2
        ),
        BenchmarkFunction("ackley", ackley, _const_bounds(-32.768, 32.768), **_zero_at(0.0)),
        BenchmarkFunction("sphere", sphere, _const_bounds(-5.12, 5.12), **_zero_at(0.0)),
        BenchmarkFunction("ellipsoid", ellipsoid, _const_bounds(-5.12, 5.12), **_zero_at(0.0)),
        BenchmarkFunction(
            "rotated_ellipsoid", rotated_ellipsoid, _const_bounds(-5.12, 5.12), **_zero_at(0.0)
        ),
        BenchmarkFunction("griewank", griewank, _const_bounds(-600.0, 600.0), **_zero_at(0.0)),
        BenchmarkFunction(
            "schwefel", schwefel, _const_bounds(-500.0, 500.0), **_zero_at(SCHWEFEL_X)
        ),
        BenchmarkFunction(
            "styblinski_tang",
            styblinski_tang,
            _const_bounds(-5.0, 5.0),
            optimum_value=lambda d: STYBLINSKI_TANG_PER_DIM * d,
            optimum_x=_filled(STYBLINSKI_TANG_X),
        ),
        BenchmarkFunction("levy", levy, _const_bounds(-10.0, 10.0), **_zero_at(1.0)),
        BenchmarkFunction(
            "michalewicz",
            michalewicz,
            _const_bounds(0.0, math.pi),
            optimum_value=lambda d: float(michalewicz(np.array([_michalewicz_argmin(d)]))[0]),
            optimum_x=lambda d: np.array(_michalewicz_argmin(d)),
        ),
        BenchmarkFunction(
            "permutation",
            permutation,
            lambda d: (-float(d), float(d)),
            optimum_value=_const_value(0.0),
            optimum_x=_indices,
        ),
        BenchmarkFunction(
            "easom",
            easom,
            _const_bounds(-10.0, 10.0),
            optimum_value=_easom_opt_value,
            optimum_x=_easom_opt_x,
        ),
    ]
}

_GAUSS = partial(neg_gaussian, mean=GAUSS_MEAN, cov=GAUSS_COV)

_TWO_D: dict[str, BenchmarkFunction] = {
    bf.name: bf
    for bf in [
        BenchmarkFunction("chasm", chasm, _const_bounds(-2.0, 2.0), **_zero_at(0.0), fixed_dims=2),
        BenchmarkFunction("gauss", _GAUSS, _const_bounds(-5.0, 5.0), **_known(_GAUSS, GAUSS_MEAN)),
        BenchmarkFunction("shekel", shekel, _const_bounds(0.0, 10.0), **_known(shekel, SHEKEL_X)),
        BenchmarkFunction(
            "langermann", langermann, _const_bounds(0.0, 10.0), **_known(langermann, LANGERMANN_X)
        ),
        BenchmarkFunction(
            "3gaussians", three_gaussians, _const_bounds(-5.0, 5.0),
            **_known(three_gaussians, THREE_GAUSSIANS_X),
        ),
    ]
}


ALIAS_OPTIMA: dict[str, tuple[float | None, Array]] = {}  #: those computed (first use)


def _alias(
    name: str, base: BenchmarkFunction, dims: int, bounds: tuple[float, float] | None
) -> BenchmarkFunction:
    """``base`` fixed to ``dims`` (and to L2L's ``bounds``), under the L2L name; its optimum
    is computed on first use (Michalewicz's is a grid search), kept in ``ALIAS_OPTIMA``."""

    def optimum() -> tuple[float | None, Array]:
        if name not in ALIAS_OPTIMA:
            x = np.asarray(base.optimum_x(dims), dtype=float)
            ALIAS_OPTIMA[name] = (base.optimum_value(dims), x)
        return ALIAS_OPTIMA[name]

    low, high = bounds if bounds is not None else base.bounds(dims)
    return BenchmarkFunction(
        name, base.f, _const_bounds(low, high), optimum_value=lambda d: optimum()[0],
        optimum_x=lambda d: optimum()[1].copy(), fixed_dims=dims, min_dims=dims,
    )


_BASE = {**_GENERIC, **_TWO_D}

#: The L2L benchmark index: position i is L2L's ``benchmark_id`` i.
#: Entries: (name, base function, dims, L2L bounds or None to keep the base bounds).
_L2L_SPEC: tuple[tuple[str, str, int, tuple[float, float] | None], ...] = (
    ("Rastrigin2d", "rastrigin", 2, (-5.0, 5.0)),
    ("Rastrigin10d", "rastrigin", 10, (-5.0, 5.0)),
    ("Rosenbrock2d", "rosenbrock", 2, (-2.0, 2.0)),
    ("Rosenbrock10d", "rosenbrock", 10, (-2.0, 2.0)),
    ("Ackley2d", "ackley", 2, (-2.0, 2.0)),
    ("Ackley10d", "ackley", 10, (-2.0, 2.0)),
    ("Chasm", "chasm", 2, None),
    ("Gauss2d", "gauss", 2, None),
    ("Shekel2d", "shekel", 2, None),
    ("Langermann2d", "langermann", 2, None),
    ("Michalewicz2d", "michalewicz", 2, None),
    ("Permutation2d", "permutation", 2, None),
    ("Easom2d", "easom", 2, None),
    ("Easom10d", "easom", 10, None),
    ("3Gaussians2d", "3gaussians", 2, None),
)

L2L_BENCHMARKS: tuple[str, ...] = tuple(spec[0] for spec in _L2L_SPEC)

FUNCTIONS: dict[str, BenchmarkFunction] = dict(_BASE)
for _name, _base, _dims, _bounds in _L2L_SPEC:
    # "Chasm" is the same as "chasm" (L2L bounds, 2-D), so it needs no separate entry
    FUNCTIONS.setdefault(_name.lower(), _alias(_name, _BASE[_base], _dims, _bounds))


def function_names() -> list[str]:
    """All valid names (lowercase): generic families, 2-D functions, then the L2L aliases."""
    return list(FUNCTIONS)


def get_function(name: str) -> BenchmarkFunction:
    """The benchmark called ``name`` (case-insensitive); ``KeyError`` listing valid names."""
    key = str(name).lower()
    if key not in FUNCTIONS:
        raise KeyError(f"unknown function {name!r}; valid names: {', '.join(function_names())}")
    return FUNCTIONS[key]


# ---------------------------------------------------------------------------------------------
# Optimizee


class FunctionOptimizee:
    """A benchmark function as an optimizee: one real array parameter ``x`` of shape ``(dims,)``.

    ``noise`` is the standard deviation of Gaussian noise added to each evaluation, drawn from
    ``np.random.default_rng(seed)`` with the evaluation's seed, so it is reproducible.
    ``bounds`` overrides the function's default domain.  The result is a cost: minimise it.
    """

    def __init__(
        self,
        name: str,
        dims: int | None = None,
        noise: float = 0.0,
        bounds: Sequence[float] | None = None,
    ):
        try:
            self.function = get_function(name)
        except KeyError:
            raise ValueError(
                f"name: unknown function {name!r}; valid names: {', '.join(function_names())}"
            ) from None
        self.name = self.function.name
        self.dims = self._check_dims(dims)
        if isinstance(noise, bool) or not isinstance(noise, (int, float, np.number)):
            raise ValueError(f"noise must be a number >= 0, got {noise!r}")
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        self.noise = float(noise)
        self.low, self.high = self._check_bounds(bounds)

    def _check_dims(self, dims: int | None) -> int:
        fixed = self.function.fixed_dims
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, (int, np.integer))):
            raise ValueError(f"dims must be an integer, got {dims!r}")
        if fixed is not None:
            if dims is not None and dims != fixed:
                raise ValueError(f"dims must be {fixed} for {self.function.name!r}, got {dims}")
            return fixed
        if dims is None:
            raise ValueError(
                f"dims is required for {self.function.name!r} (an integer >= "
                f"{self.function.min_dims})"
            )
        if dims < self.function.min_dims:
            raise ValueError(
                f"dims must be >= {self.function.min_dims} for {self.function.name!r}, got {dims}"
            )
        return int(dims)

    def _check_bounds(self, bounds: Sequence[float] | None) -> tuple[float, float]:
        if bounds is None:
            return self.function.bounds(self.dims)
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be [low, high], got {bounds!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"bounds must be finite with low < high, got {bounds!r}")
        return low, high

    def __repr__(self) -> str:
        b = f"[{self.low}, {self.high}]"
        return f"FunctionOptimizee({self.name!r}, dims={self.dims}, noise={self.noise}, bounds={b})"

    def space_config(self) -> dict[str, Any]:
        """The search space in config form: one real array ``x`` within the bounds."""
        return {"x": {"type": "real", "low": self.low, "high": self.high, "shape": [self.dims]}}

    def evaluate(self, params: dict[str, Any], ctx: Any = None) -> float:
        """Cost of ``params["x"]`` (shape ``(dims,)``), plus noise seeded by ``ctx.seed``."""
        cost = float(self.function.f(self._x(params)[None, :])[0])
        if self.noise > 0:
            if ctx is None:
                raise ValueError("a noisy function optimizee needs a ctx with a seed")
            cost += self._noise(ctx.seed)
        return cost

    def _x(self, params: Mapping[str, Any]) -> Array:
        x = np.asarray(params["x"], dtype=float)
        if x.shape != (self.dims,):
            raise ValueError(f"x must have shape ({self.dims},), got {x.shape}")
        return x

    def evaluate_batch(self, params_list: Any, ctx_list: Any = None, *, seeds: Any = None) -> Any:
        """The batch variant (``executor.batch_size``): costs of ``[{"x": ...}, ...]`` with each
        ctx's noise; an array of rows is :meth:`evaluate_array` (seeds: ``seeds``/``ctx_list``)."""
        if not isinstance(params_list, (list, tuple)) or not all(
            isinstance(p, Mapping) for p in params_list
        ):
            return self.evaluate_array(params_list, seeds if seeds is not None else ctx_list)
        X = np.stack([self._x(p) for p in params_list]) if params_list else np.zeros((0, 1))
        seeds = None if ctx_list is None or self.noise == 0 else [c.seed for c in ctx_list]
        return [float(c) for c in self.evaluate_array(X, seeds)] if params_list else []

    def evaluate_array(self, X: Array, seeds: Sequence[int] | None = None) -> Array:
        """Costs of the rows of ``X`` (shape ``(n, dims)``); row i's noise is seeded by seeds[i]."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.dims:
            raise ValueError(f"X must have shape (n, {self.dims}), got {X.shape}")
        costs = np.asarray(self.function.f(X), dtype=float)
        if self.noise > 0:
            if seeds is None or len(seeds) != len(X):
                raise ValueError(f"seeds must give one seed per row ({len(X)}) when noise > 0")
            costs = costs + np.array([self._noise(s) for s in seeds])
        return costs

    def _noise(self, seed: int) -> float:
        return float(np.random.default_rng(seed).normal(0.0, self.noise))

    @property
    def optimum_value(self) -> float | None:
        """The global minimum of the noise-free cost (``None`` if unknown)."""
        return self.function.optimum_value(self.dims)

    @property
    def optimum_x(self) -> Array | None:
        """A global minimiser (``None`` if unknown); it may lie outside overridden bounds."""
        return self.function.optimum_x(self.dims)
