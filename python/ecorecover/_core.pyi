# Type stubs of the compiled core (rust/py). Private: use the public modules
# ecorecover.preprocessing, ecorecover.rng and ecorecover.nmf instead.
from collections.abc import Callable
from typing import Any, TypeVar, final

from typing_extensions import Self

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "__version__",
    "log_normalize_dense",
    "log_normalize_compressed",
    "scale_dense",
    "scale_csc",
    "posneg",
    "constant_columns",
    "update_h",
    "update_w",
    "solve_h_fast",
    "sum_to_one_rows",
    "gather_pass1",
    "gather_pass2",
    "gather_run_v",
    "gather_dense",
    "gather_csr",
    "RRandom",
    "qnorm",
    "column_ranges",
    "posneg_group_sums",
    "row_sums_ld",
    "select_rows",
    "ColocalizationTest",
    "MoranTest",
    "CancelToken",
    "build_info",
]

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_T = TypeVar("_T")

def build_info() -> list[tuple[str, str]]: ...

@final
class CancelToken:
    """Stops the iterative kernels called through ``run`` (from any thread) once cancelled."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def running(self) -> int: ...
    def run(self, f: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T: ...

@final
class RRandom:
    def __new__(cls, seed: int) -> Self: ...
    def unif_rand(self) -> float: ...
    def runif(self, n: int, min: float = 0.0, max: float = 1.0) -> _F64: ...
    def sample_int(self, n: float, k: int) -> _F64: ...
    def sample_int_replace(self, n: float, k: int) -> _F64: ...
    def rnorm(self, n: int, mean: float = 0.0, sd: float = 1.0) -> _F64: ...

def qnorm(p: list[float] | _F64, mean: float = 0.0, sd: float = 1.0) -> _F64: ...

def log_normalize_dense(x: _F64, scale_factor: float = 10000.0, n_threads: int | None = None) -> _F64: ...
def log_normalize_compressed(
    indptr: _I64,
    indices: _I64,
    data: _F64,
    n_major: int,
    n_minor: int,
    csr: bool,
    scale_factor: float = 10000.0,
    n_threads: int | None = None,
) -> _F64: ...
def scale_dense(x: _F64, method: str = "sparse", scale_max: float = 10.0, n_threads: int | None = None) -> _F64: ...
def scale_csc(
    indptr: _I64,
    indices: _I64,
    data: _F64,
    n_genes: int,
    n_cells: int,
    method: str = "sparse",
    scale_max: float = 10.0,
    n_threads: int | None = None,
) -> _F64: ...
def posneg(x: _F64) -> _F64: ...
def constant_columns(x: _F64) -> npt.NDArray[np.bool_]: ...
def row_sums_ld(w: _F64) -> _F64: ...
def column_ranges(z: _F64, rows: _I64) -> tuple[_F64, _F64]: ...
def posneg_group_sums(z: _F64, rows: _I64, starts: _I64) -> tuple[_F64, _F64]: ...
def select_rows(w: _F64, row_gene: _I64, n_per_se: int | None = None) -> _I64: ...
def update_h(
    v: _F64,
    w: _F64,
    h0: _F64,
    max_iter: int = 2000,
    every: int = 10,
    stationary: int = 40,
    n_threads: int | None = None,
) -> tuple[_F64, int]: ...
def update_w(
    v: _F64,
    w0: _F64,
    h: _F64,
    max_iter: int = 2000,
    every: int = 10,
    stationary: int = 40,
    n_threads: int | None = None,
) -> tuple[_F64, int]: ...
def solve_h_fast(
    indptr: _I64,
    indices: _I64,
    data: _F64,
    n_genes: int,
    wpos: _F64,
    wneg: _F64,
    posneg: bool,
    mean: _F64 | None = None,
    sd: _F64 | None = None,
    scale_max: float = 10.0,
    max_iter: int = 100,
    tol: float = 1e-10,
    n_threads: int | None = None,
) -> tuple[_F64, npt.NDArray[np.uint32]]: ...
def sum_to_one_rows(h: _F64, n_threads: int | None = None) -> _F64: ...

# gather: x is a 2-d numpy array (any strides) or a scipy CSR/CSC matrix/array, values
# float64/float32/int64/int32/uint32/uint16, indices int32/int64; read in place.
_Where = tuple[int, int, float] | None
def gather_pass1(
    x: Any, start: int, stop: int, cols: _I64, groups: _I64, n_groups: int, scale: bool, transform: bool,
    sums: _F64, nnz: _I64, lo: _F64, hi: _F64, omitted: npt.NDArray[np.bool_], n_threads: int | None = None,
) -> tuple[int, _Where, _Where, float, float, bool]: ...
def gather_pass2(
    x: Any, start: int, stop: int, cols: _I64, groups: _I64, mean: _F64, transform: bool, sq: _F64,
    n_threads: int | None = None,
) -> None: ...
def gather_run_v(
    x: Any, rows: _I64, cols: _I64, mean: _F64 | None, sd: _F64 | None, posneg: bool, transform: bool,
    in_w: npt.NDArray[np.bool_], scale_max: float = 10.0, n_threads: int | None = None,
) -> tuple[_F64, _I64]: ...
def gather_dense(
    x: Any, rows: _I64, cols: _I64, mean: _F64 | None = None, sd: _F64 | None = None, transform: bool = False,
    scale_max: float = 10.0, n_threads: int | None = None,
) -> _F64: ...
def gather_csr(
    x: Any, rows: _I64, cols: _I64, transform: bool = False, n_threads: int | None = None,
) -> tuple[_I64, _I64, _F64]: ...

_U32 = npt.NDArray[np.uint32]

@final
class ColocalizationTest:
    def __new__(
        cls,
        x: _F64,
        y: _F64,
        labels: _U32,
        n_states: int,
        groups: _U32,
        k_others: int,
        radius: float,
        min_cells: int,
        seed: int,
        n_threads: int | None = None,
    ) -> Self: ...
    def observed(self) -> _F64: ...
    def kept_per_state(self) -> npt.NDArray[np.uint64]: ...
    def sizes(self) -> tuple[int, int]: ...
    @property
    def n_done(self) -> int: ...
    def run(self, n: int, n_threads: int | None = None) -> None: ...
    def moments(self) -> tuple[_F64, _F64]: ...
    def coassociation(self, z: _F64, se: _U32, n_se: int, n_perm: int) -> _F64: ...

@final
class MoranTest:
    def __new__(
        cls,
        x: _F64,
        y: _F64,
        labels: _U32,
        n_labels: int,
        groups: _U32,
        k: int,
        seed: int,
        n_threads: int | None = None,
    ) -> Self: ...
    def observed(self) -> _F64: ...
    @property
    def n_done(self) -> int: ...
    def run(self, n: int, n_threads: int | None = None) -> None: ...
    def moments(self) -> tuple[_F64, _F64]: ...
