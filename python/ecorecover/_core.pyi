# Type stubs of the compiled core (rust/py). Private: use the public modules
# ecorecover.preprocessing, ecorecover.rng and ecorecover.nmf instead.
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

__version__: str

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_T = TypeVar("_T")

def build_info() -> list[tuple[str, str]]: ...

class CancelToken:
    """Stops the iterative kernels called through ``run`` (from any thread) once cancelled."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def running(self) -> int: ...
    def run(self, f: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T: ...

class RRandom:
    def __init__(self, seed: int) -> None: ...
    def unif_rand(self) -> float: ...
    def runif(self, n: int, min: float = 0.0, max: float = 1.0) -> F64: ...
    def sample_int(self, n: float, k: int) -> F64: ...
    def sample_int_replace(self, n: float, k: int) -> F64: ...
    def rnorm(self, n: int, mean: float = 0.0, sd: float = 1.0) -> F64: ...

def qnorm(p: list[float] | F64, mean: float = 0.0, sd: float = 1.0) -> F64: ...

def log_normalize_dense(x: F64, scale_factor: float = 10000.0, n_threads: int | None = None) -> F64: ...
def log_normalize_compressed(
    indptr: I64,
    indices: I64,
    data: F64,
    n_major: int,
    n_minor: int,
    csr: bool,
    scale_factor: float = 10000.0,
    n_threads: int | None = None,
) -> F64: ...
def scale_dense(x: F64, method: str = "sparse", scale_max: float = 10.0, n_threads: int | None = None) -> F64: ...
def scale_csc(
    indptr: I64,
    indices: I64,
    data: F64,
    n_genes: int,
    n_cells: int,
    method: str = "sparse",
    scale_max: float = 10.0,
    n_threads: int | None = None,
) -> F64: ...
def posneg(x: F64) -> F64: ...
def constant_columns(x: F64) -> npt.NDArray[np.bool_]: ...
def row_sums_ld(w: F64) -> F64: ...
def select_rows(w: F64, row_gene: I64, n_per_se: int | None = None) -> I64: ...
def update_h(
    v: F64,
    w: F64,
    h0: F64,
    max_iter: int = 2000,
    every: int = 10,
    stationary: int = 40,
    n_threads: int | None = None,
) -> tuple[F64, int]: ...
def update_w(
    v: F64,
    w0: F64,
    h: F64,
    max_iter: int = 2000,
    every: int = 10,
    stationary: int = 40,
    n_threads: int | None = None,
) -> tuple[F64, int]: ...
def solve_h_fast(
    indptr: I64,
    indices: I64,
    data: F64,
    n_genes: int,
    wpos: F64,
    wneg: F64,
    posneg: bool,
    mean: F64 | None = None,
    sd: F64 | None = None,
    scale_max: float = 10.0,
    max_iter: int = 100,
    tol: float = 1e-10,
    n_threads: int | None = None,
) -> tuple[F64, npt.NDArray[np.uint32]]: ...
def sum_to_one_rows(h: F64, n_threads: int | None = None) -> F64: ...

# gather: x is a 2-d numpy array (any strides) or a scipy CSR/CSC matrix/array, values
# float64/float32/int64/int32/uint32/uint16, indices int32/int64; read in place.
_Where = tuple[int, int, float] | None
def gather_pass1(
    x: Any, start: int, stop: int, cols: I64, groups: I64, n_groups: int, scale: bool, transform: bool,
    sums: F64, nnz: I64, lo: F64, hi: F64, omitted: npt.NDArray[np.bool_], n_threads: int | None = None,
) -> tuple[int, _Where, _Where, float, float, bool]: ...
def gather_pass2(
    x: Any, start: int, stop: int, cols: I64, groups: I64, mean: F64, transform: bool, sq: F64,
    n_threads: int | None = None,
) -> None: ...
def gather_run_v(
    x: Any, rows: I64, cols: I64, mean: F64 | None, sd: F64 | None, posneg: bool, transform: bool,
    in_w: npt.NDArray[np.bool_], scale_max: float = 10.0, n_threads: int | None = None,
) -> tuple[F64, I64]: ...
def gather_dense(
    x: Any, rows: I64, cols: I64, mean: F64 | None = None, sd: F64 | None = None, transform: bool = False,
    scale_max: float = 10.0, n_threads: int | None = None,
) -> F64: ...
def gather_csr(
    x: Any, rows: I64, cols: I64, transform: bool = False, n_threads: int | None = None,
) -> tuple[I64, I64, F64]: ...

U32 = npt.NDArray[np.uint32]

class ColocalizationTest:
    def __init__(
        self,
        x: F64,
        y: F64,
        labels: U32,
        n_states: int,
        groups: U32,
        k_others: int,
        radius: float,
        min_cells: int,
        seed: int,
        n_threads: int | None = None,
    ) -> None: ...
    def observed(self) -> F64: ...
    def kept_per_state(self) -> npt.NDArray[np.uint64]: ...
    def sizes(self) -> tuple[int, int]: ...
    @property
    def n_done(self) -> int: ...
    def run(self, n: int, n_threads: int | None = None) -> None: ...
    def moments(self) -> tuple[F64, F64]: ...
    def coassociation(self, z: F64, se: U32, n_se: int, n_perm: int) -> F64: ...

class MoranTest:
    def __init__(
        self,
        x: F64,
        y: F64,
        labels: U32,
        n_labels: int,
        groups: U32,
        k: int,
        seed: int,
        n_threads: int | None = None,
    ) -> None: ...
    def observed(self) -> F64: ...
    @property
    def n_done(self) -> int: ...
    def run(self, n: int, n_threads: int | None = None) -> None: ...
    def moments(self) -> tuple[F64, F64]: ...
