"""Small data sets shipped inside the package, for the examples and tests (no download).

``digits``: the 1,797 8x8 handwritten digits of E. Alpaydin and C. Kaynak (UCI Machine
Learning Repository, "Optical Recognition of Handwritten Digits", 1998, CC BY 4.0) — the copy
scikit-learn ships as ``load_digits``, stored here as a 45 kB compressed ``.npz`` so that the
examples need neither scikit-learn nor a network connection.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    path = _DIR / "digits.npz"
    if not path.is_file():  # an installation without the package data: scikit-learn's copy
        try:
            from sklearn.datasets import load_digits as sklearn_digits
        except ImportError:
            raise FileNotFoundError(
                f"the digits data set is missing from this installation ({path}) and "
                "scikit-learn is not installed to provide it"
            ) from None
        ref = sklearn_digits()
        return ref.data.astype(np.uint8), ref.target.astype(np.uint8)
    with np.load(path) as data:
        return data["images"], data["labels"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: images as a float array of shape (1797, 64) with pixel values
    0..16 (rows of the 8x8 image, as scikit-learn's ``load_digits().data``), labels as int
    (1797,) in 0..9.  Fresh copies: callers may modify them."""
    images, labels = _digits()
    return images.astype(float), labels.astype(int)


def train_test_split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of a seeded random split of ``n`` items."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


__all__ = ["load_digits", "train_test_split"]
