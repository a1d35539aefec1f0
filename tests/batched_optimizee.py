"""An optimizee with ``evaluate_batch`` (a noisy parabola; each result reports its batch's
size), shared by the executor tests that check batches travel whole (Dask, MPI)."""


class Batched:
    def evaluate_batch(self, params_list, ctxs):  # type: ignore[no-untyped-def]
        n = len(params_list)
        return [
            {"fitness": p["x"] ** 2 + 0.01 * c.rng.normal(), "metrics": {"batch": n}}
            for p, c in zip(params_list, ctxs)
        ]
