"""Which expression matrix a command gives the library: ``--layer`` / ``--use-raw`` checked
against the data, ``--normalize`` applied (the raw counts kept), and the matching keyword
arguments of the API function."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

from .messages import CLIError
from .session import log

__all__ = ["takes", "check_matrix_options", "normalize", "expression_in"]


def takes(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` has a parameter ``name`` (options of newer APIs)."""
    return name in inspect.signature(func).parameters


def check_matrix_options(adata: Any, args: argparse.Namespace, func: Callable[..., Any]) -> None:
    """--layer / --use-raw name a matrix the data have, and the API takes them."""
    if args.use_raw:
        if not takes(func, "use_raw"):
            raise CLIError("--use-raw needs a newer ecorecover (this one's API has no use_raw)")
        if args.layer is not None:
            raise CLIError("--layer and --use-raw both name a matrix; pass one of them")
        if args.normalize:
            raise CLIError("--normalize with --use-raw: --normalize log-normalises raw counts in X or a --layer; "
                           "adata.raw usually holds log-normalised data already (leave out --normalize)")
        if adata.raw is None:
            raise CLIError(f"{args.data}: --use-raw, but the data have no raw (adata.raw is None)")
    _check_layer(adata, args.layer, args.data)


def _check_layer(adata: Any, layer: str | None, data: str) -> None:
    if layer is None:
        return
    from .._input_data import layer_names

    have = layer_names(adata)
    if layer not in have:
        raise CLIError(f"{data}: no layer {layer!r} for --layer (layers: {', '.join(map(str, have[:12])) or 'none'})")


def _free_layer(adata: Any, name: str) -> str:
    """``name``, or ``name_1``, ``name_2``... when ``adata.layers`` already has it."""
    out, i = name, 0
    while out in adata.layers:
        i += 1
        out = f"{name}_{i}"
    return out


def _refuse_negative(adata: Any, x: Any, data: str) -> None:
    """--normalize needs raw counts: refuse a negative value, naming the first."""
    import numpy as np
    import scipy.sparse as sp  # type: ignore[import-untyped, unused-ignore]

    first: tuple[int, int] | None
    if sp.issparse(x):
        coo = x.tocoo()
        neg = np.flatnonzero(coo.data < 0)
        first = (int(coo.row[neg[0]]), int(coo.col[neg[0]])) if neg.size else None
        n_neg = int(neg.size)
    else:
        neg_mask = np.asarray(x) < 0
        n_neg = int(neg_mask.sum())
        at = np.unravel_index(int(np.argmax(neg_mask)), neg_mask.shape)
        first = (int(at[0]), int(at[1])) if n_neg else None
    if first is not None:
        i, j = first
        raise CLIError(f"{data}: --normalize needs raw counts, but {n_neg} value(s) are negative, first for cell "
                       f"{str(adata.obs_names[i])!r}, gene {str(adata.var_names[j])!r}: {float(x[i, j])!r}")


def normalize(adata: Any, data: str, layer: str | None = None) -> str | None:
    """Log-normalise the raw counts in X, or in ``layers[layer]``, keeping the counts.

    From X: X becomes log-normalised and the counts move to ``layers["counts"]`` (``counts_1``...
    when taken). From a layer: the layer stays as it is and the log-normalised matrix goes to a new
    layer ``<layer>_lognorm``, whose name is returned (X is left alone); None for X.
    """
    from ..preprocessing import log_normalize

    x = adata.X if layer is None else adata.layers[layer]
    _refuse_negative(adata, x, data)
    t0 = time.perf_counter()
    normalized = log_normalize(x)
    if layer is None:
        kept = _free_layer(adata, "counts")
        adata.layers[kept] = x
        adata.X = normalized
        log.info("log-normalised X (%.1f s); the raw counts are kept in layers[%r]", time.perf_counter() - t0, kept)
        return None
    out = _free_layer(adata, f"{layer}_lognorm")
    adata.layers[out] = normalized
    log.info("log-normalised layers[%r] into layers[%r] (%.1f s)", layer, out, time.perf_counter() - t0)
    return out


@contextlib.contextmanager
def expression_in(adata: Any, func: Callable[..., Any], layer: str | None,
                  use_raw: bool = False) -> Iterator[dict[str, Any]]:
    """The keyword arguments that make ``func`` read ``layers[layer]`` (``layer=`` when it takes
    one, else the layer is put in X for the call and X restored after) or ``adata.raw``."""
    if use_raw:
        yield {"use_raw": True}
        return
    if layer is None:
        yield {}
        return
    if takes(func, "layer"):
        yield {"layer": layer}
        return
    orig = adata.X
    adata.X = adata.layers[layer]
    try:
        yield {}
    finally:
        adata.X = orig
