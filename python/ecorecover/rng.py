"""R's default random number generator, draw for draw.

:class:`RRandom` reproduces ``set.seed(seed)`` followed by ``runif`` / ``sample.int`` /
``sample`` / ``rnorm`` in one R session (R >= 3.6 defaults: Mersenne-Twister, Inversion, Rejection).
The state carries across calls exactly as in R, so a sequence of calls on one object draws
what the same sequence of R calls would.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any, TypeVar

import numpy as np

from . import _core
from ._params import Interval, validate_params
from .errors import ParameterError

T = TypeVar("T")

__all__ = ["RRandom"]


class RRandom:
    """R's Mersenne-Twister generator seeded as by ``set.seed(seed)``.

    Parameters
    ----------
    seed
        The integer given to R's ``set.seed`` (32-bit signed range).

    Examples
    --------
    >>> r = RRandom(2024)
    >>> r.sample_int(10, 3)  # as set.seed(2024); sample.int(10, 3)
    array([...])
    """

    @validate_params({"seed": [Interval("whole", -(2**31), 2**31, closed="neither")]})
    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._gen = _core.RRandom(self.seed)

    def __repr__(self) -> str:
        return f"RRandom(seed={self.seed})"

    def unif_rand(self) -> float:
        """One draw of R's ``unif_rand()``, in the open interval (0, 1)."""
        return float(self._gen.unif_rand())

    @validate_params({"n": [Interval("whole", 0, None)], "min": [Real], "max": [Real]})
    def runif(self, n: int, min: float = 0.0, max: float = 1.0) -> np.ndarray:
        """R's ``runif(n, min, max)`` as a float64 array."""
        return self._gen.runif(int(n), float(min), float(max))

    @validate_params({"n": [Interval("whole", 0, None)], "k": [None, Interval("whole", 0, None)]})
    def sample_int(self, n: int, k: int | None = None) -> np.ndarray:
        """R's ``sample.int(n, k)`` without replacement: 1-based values, in drawn order.

        Uses R's hash-set algorithm when ``n > 1e7`` and ``k <= n / 2`` and R's partial
        Fisher-Yates shuffle otherwise, as R does. Returns int64.
        """
        n = int(n)
        k = n if k is None else int(k)
        if k > n:
            raise ParameterError(
                f"cannot take a sample larger than the population without replacement (k={k} > n={n})"
            )
        return self._gen.sample_int(float(n), k).astype(np.int64)

    @validate_params({"n": [Interval("whole", 0, None)], "k": [Interval("whole", 0, None)]})
    def sample_int_replace(self, n: int, k: int) -> np.ndarray:
        """R's ``sample.int(n, k, replace = TRUE)``: 1-based values (int64), each drawn by
        ``R_unif_index(n)`` (rejection sampling), as ``sample(x, k, replace = TRUE)`` uses."""
        if n < 1:
            raise ParameterError(f"need n >= 1 and k >= 0 to sample with replacement, got n={n}, k={k}")
        return self._gen.sample_int_replace(float(n), int(k)).astype(np.int64)

    @validate_params({"n": [Interval("whole", 0, None)], "mean": [Real], "sd": [Real]})
    def rnorm(self, n: int, mean: float = 0.0, sd: float = 1.0) -> np.ndarray:
        """R's ``rnorm(n, mean, sd)`` with ``normal.kind = "Inversion"`` (R's default):
        ``qnorm`` (AS 241) of a uniform made from two ``unif_rand()`` draws."""
        return self._gen.rnorm(int(n), float(mean), float(sd))

    def sample(self, x: Sequence[T] | np.ndarray, k: int | None = None) -> Any:
        """R's ``sample(x, k)`` for a vector ``x`` of length > 1: ``x[sample.int(length(x), k)]``.

        A length-1 numeric ``x`` behaves as in R, i.e. as ``sample.int(x, k)``.
        Returns an array for array input and a list otherwise.
        """
        xs: Any = x
        if np.ndim(xs) == 0 or len(x) == 1:
            v = x if np.ndim(xs) == 0 else x[0]
            if isinstance(v, (int, np.integer, float, np.floating)) and v >= 1:
                return self.sample_int(int(v), k)  # R: sample(5, k) is sample.int(5, k)
            if np.ndim(xs) == 0:
                raise TypeError(f"x must be a sequence or a number >= 1, got {x!r}")
        n = len(x)
        idx = self.sample_int(n, n if k is None else k) - 1
        if isinstance(x, np.ndarray):
            return x[idx]
        return [x[i] for i in idx]

