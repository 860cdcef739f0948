"""The ``ecorecover`` command line: train, aggregate, recover, inspect, demo, validate.

Every output file is written atomically (temporary file + rename; removed on errors and SIGTERM)
and is never overwritten without ``--force``; a symlink, device, fifo or directory is never
replaced, even with ``--force`` (the rule of ``RecoveryModel.save``). Exit codes: 0 success,
2 bad usage or input (a one-line message naming the file and the problem; ``-v`` adds the
traceback), 1 an unexpected internal error, 130 interrupted. Progress bars go to stderr
(``--quiet`` turns them off).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main", "build_parser", "CLIError"]

log = logging.getLogger("ecorecover.cli")

#: Environment variable the run index defaults to (Slurm job arrays).
RUN_INDEX_ENV = "SLURM_ARRAY_TASK_ID"
TABLE_SUFFIXES = (".tsv", ".csv", ".parquet", ".tsv.gz", ".csv.gz")


class CLIError(Exception):
    """Bad usage or input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: ...; see --help``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


#: The Python API's parameter names and the options that set them on the command line. Messages
#: raised by the library name the parameters (``pass gene_symbols=``); the CLI prints the options.
API_TO_FLAG = {
    "gene_symbols": "--gene-symbols",
    "layer": "--layer",
    "use_raw": "--use-raw",
    "key_added": "--key-added",
    "overwrite": "--force",
    "celltype_key": "--celltype-key",
    "se_key": "--se-key",
    "sample_key": "--sample-key",
    "n_features": "--n-features",
    "n_features_per_se": "--n-features-per-se",
    "min_score": "--min-score",
    "n_runs": "--runs",
}
_API_PARAM = re.compile(r"(?<![\w.\-])(" + "|".join(sorted(API_TO_FLAG, key=len, reverse=True)) + r")=(True\b|False\b|None\b)?")


#: API functions whose command-line counterpart is an option.
API_FUNCTION_TO_FLAG = {"ecorecover.preprocessing.log_normalize": "--normalize"}


def cli_spelling(text: str) -> str:
    """``text`` with the API's ``name=`` hints spelled as this command line's options.

    ``pass gene_symbols=`` becomes ``pass --gene-symbols``, ``layer='counts'`` becomes
    ``--layer 'counts'``, ``overwrite=True`` becomes ``--force``, ``layer=None`` becomes
    ``no --layer``, ``ecorecover.preprocessing.log_normalize`` becomes ``--normalize``; other
    text is unchanged.
    """
    def flag(m: re.Match[str]) -> str:
        opt = API_TO_FLAG[m.group(1)]
        if m.group(2) == "True":  # a switch
            return opt
        if m.group(2) is not None:  # False / None: the option left out
            return f"no {opt}"
        rest = m.string[m.end():m.end() + 1]
        return opt + (" " if rest and not rest.isspace() and rest not in ",;:)" else "")

    for func, opt in API_FUNCTION_TO_FLAG.items():
        text = text.replace(func, opt)
    return _API_PARAM.sub(flag, text)


# -- argument types ------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _int_or_none(text: str) -> int | None:
    if text.strip().lower() in ("none", "inf", "all"):
        return None
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}") from None


def _float(text: str) -> float:
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _unit_float(text: str) -> float:
    v = _float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return v


# -- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ecorecover`` (one subparser per command)."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("output and logging")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress messages (warnings and errors still show)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks on errors")

    force = argparse.ArgumentParser(add_help=False)
    force.add_argument("--force", action="store_true", help="overwrite existing output files")

    p = _Parser(
        prog="ecorecover",
        description="Train SE recovery models on annotated single-cell data, combine runs into "
        "ensembles and recover spatial-ecotype cell states in new data.",
        epilog="Run 'ecorecover COMMAND --help' for a command's options. Exit codes: 0 success, "
        "2 bad usage or input, 1 internal error.",
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"ecorecover {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    data_help = ("expression data: .h5ad, 10x .h5, 10x matrix.mtx directory, or a genes x cells "
                 ".tsv/.csv(.gz) table with gene names in the first column")
    meta_help = "cell metadata table (.tsv/.csv(.gz), first column cell ids), aligned to the cells by id"
    layer_help = ("use this layer of an .h5ad (layers[NAME]) instead of X; with --normalize it holds the raw "
                  "counts (default: X)")
    raw_help = "use the log-normalised expression in an .h5ad's raw (adata.raw.X, scanpy's convention) instead of X"

    # train
    t = sub.add_parser(
        "train", parents=[common, force], help="train a recovery model (one run of an ensemble with --run-index)",
        description="Train cell-type-specific SE recovery models (R NMFGenerateWList). With --runs R "
        "and no run index, trains the R-run ensemble in this process. With --run-index I (default: "
        f"${RUN_INDEX_ENV} when set) trains only run I, with seed S + I, for a job array; "
        "'ecorecover aggregate' of runs 0..R-1 then equals the in-process ensemble exactly.",
    )
    t.add_argument("data", metavar="DATA", help=data_help)
    t.add_argument("--meta", metavar="META", help=meta_help + " (optional if DATA is .h5ad with the keys in obs)")
    t.add_argument("--out", metavar="MODEL", required=True, help="output model file (.h5)")
    t.add_argument("--celltype-key", default="CellType", metavar="KEY", help="metadata column of cell types (default: %(default)s)")
    t.add_argument("--se-key", default="SE", metavar="KEY", help="metadata column of SE labels (default: %(default)s)")
    t.add_argument("--sample-key", default=None, metavar="KEY", help="metadata column of samples (default: none; R's Sample = NULL)")
    t.add_argument("--n-features", type=_positive_int, default=300, metavar="N", help="top-variance genes per cell type (default: %(default)s)")
    t.add_argument("--n-features-per-se", type=_int_or_none, default=50, metavar="N|none",
                   help="genes kept per SE; 'none' keeps all (R's Inf, as the ensemble tutorial) (default: %(default)s)")
    t.add_argument("--seed", type=_nonneg_int, default=2024, metavar="S", help="base seed; run I uses S + I (default: %(default)s)")
    t.add_argument("--runs", type=_positive_int, default=1, metavar="R", help="number of runs of the ensemble (default: %(default)s)")
    t.add_argument("--run-index", type=_nonneg_int, default=None, metavar="I",
                   help=f"train only run I (0 <= I < R) with seed S + I (default: ${RUN_INDEX_ENV} when set)")
    t.add_argument("--normalize", action="store_true", help="log-normalise raw counts first (Seurat LogNormalize)")
    t.add_argument("--layer", metavar="NAME", default=None, help=layer_help)
    t.add_argument("--use-raw", action="store_true", help=raw_help)
    t.set_defaults(func=_cmd_train)

    # aggregate
    a = sub.add_parser(
        "aggregate", parents=[common, force], help="combine runs into an ensemble model",
        description="Combine trained runs into one ensemble model (R AggregateRecoverModels). Runs "
        "written by 'ecorecover train --run-index' are put in run-index order whatever the order "
        "of the files on the command line.",
    )
    a.add_argument("models", metavar="MODEL", nargs="+", help="model files of the runs")
    a.add_argument("--out", metavar="MODEL", required=True, help="output model file (.h5)")
    a.add_argument("--delta-threshold", type=_float, default=0.01, metavar="X", help="default: %(default)s")
    a.add_argument("--min-model-fraction", type=_float, default=0.5, metavar="X", help="default: %(default)s")
    a.set_defaults(func=_cmd_aggregate)

    # recover
    r = sub.add_parser(
        "recover", parents=[common, force], help="recover SEs of the cells of a dataset",
        description="Recover the SE of every cell (R RecoverSE) and write a table: one row per "
        "cell, columns CellType, InitSE, SE, PredScore, then one score column per SE.",
    )
    r.add_argument("data", metavar="DATA", help=data_help)
    r.add_argument("--meta", metavar="META", help=meta_help + " (optional if DATA is .h5ad with the cell types in obs)")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="MODEL", help="model file written by 'ecorecover train' or 'aggregate', or R "
                     "models (.rds/.tsv W matrices or a directory of them, used as given like R's explicit Ws)")
    src.add_argument("--published", metavar="DIR",
                     help="directory of the published MERSCOPE models (MERSCOPE_W_v1_<CellType>.rds|.tsv and "
                     "SE_CellStates.txt); R's default-branch post-processing is applied")
    r.add_argument("--celltype-key", default="CellType", metavar="KEY", help="metadata column of cell types (default: %(default)s)")
    r.add_argument("--min-score", type=_unit_float, default=0.0, metavar="X", help="cells scoring below are 'NonSE' (default: %(default)s)")
    r.add_argument("--mode", choices=("exact", "fast"), default="exact", help="exact = R's algorithm (default); fast = per-cell solver")
    r.add_argument("--out", metavar="TABLE", required=True, help="output table: .tsv, .csv (optionally .gz) or .parquet (needs pyarrow)")
    r.add_argument("--write-h5ad", metavar="OUT.h5ad", default=None,
                   help="also write the data with the results in obs/obsm/uns (with --normalize: X log-normalised, "
                   "the raw counts in layers['counts'])")
    r.add_argument("--normalize", action="store_true", help="log-normalise raw counts first (Seurat LogNormalize)")
    r.add_argument("--layer", metavar="NAME", default=None, help=layer_help)
    r.add_argument("--use-raw", action="store_true", help=raw_help)
    r.add_argument("--gene-symbols", metavar="COLUMN", default=None,
                   help="match the model's genes to this var column (e.g. gene symbols when var names are "
                   "Ensembl ids) instead of the var names")
    r.add_argument("--key-added", metavar="KEY", default=_api_default("recover", "key_added", "SE_recovered"),
                   help="obs/obsm/uns key of the results in --write-h5ad's file; an existing key is replaced only "
                   "with --force (default: %(default)s)")
    r.set_defaults(func=_cmd_recover)

    # inspect
    i = sub.add_parser(
        "inspect", parents=[common], help="describe a model file",
        description="Print a model's cell types, SEs, feature counts and provenance. Also reads R "
        "models (.rds/.tsv files or a directory of them).",
    )
    i.add_argument("model", metavar="MODEL", help="model file (.h5), or R models (.rds/.tsv or a directory)")
    i.set_defaults(func=_cmd_inspect)

    # demo
    d = sub.add_parser(
        "demo", parents=[common, force], help="simulate data, train, recover, report accuracy",
        description="Simulate a small dataset with planted SEs (ecorecover.simulate), train a model, "
        "recover the SEs of a held-out simulated dataset and print the accuracy and timings. "
        "Deterministic for a given --seed.",
    )
    d.add_argument("--seed", type=_nonneg_int, default=1, metavar="S", help="simulation seed (default: %(default)s)")
    d.add_argument("--cells", type=_positive_int, default=6000, metavar="N", help="training cells (default: %(default)s)")
    d.add_argument("--held-out", type=_positive_int, default=3000, metavar="N", help="held-out cells (default: %(default)s)")
    d.add_argument("--runs", type=_positive_int, default=1, metavar="R", help="ensemble runs (default: %(default)s)")
    d.add_argument("--mode", choices=("exact", "fast"), default="exact", help="recovery mode (default: %(default)s)")
    d.add_argument("--out-dir", metavar="DIR", default=None,
                   help="also write train.h5ad, held_out.h5ad, model.h5 and recovered.tsv there, to try the other commands on")
    d.set_defaults(func=_cmd_demo)

    # validate (spatial checks of recovered SEs)
    from . import _cli_validate

    _cli_validate.add_parser(sub, [common, force], {"float": _float, "positive_int": _positive_int,
                                                  "nonneg_int": _nonneg_int})
    return p


def _api_default(func: str, param: str, fallback: Any) -> Any:
    """The default of ``param`` of the Python API's ``ecorecover.<func>`` (the CLI uses the same)."""
    import inspect

    import ecorecover

    p = inspect.signature(getattr(ecorecover, func)).parameters.get(param)
    return fallback if p is None or p.default is inspect.Parameter.empty else p.default


# -- helpers ---------------------------------------------------------------------------------------
def _setup_logging(verbose: bool, quiet: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("ecorecover: %(message)s"))
    root = logging.getLogger("ecorecover")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else (logging.WARNING if quiet else logging.INFO))
    root.propagate = False
    return handler


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: Any = None) -> None:
    text = cli_spelling(_one_line(message))
    if category.__name__ == "RawCountWarning" and "--normalize" not in text:
        text += " [use --normalize to log-normalise raw counts instead]"
    log.warning("warning: %s", text)


def _read_data(path: str, meta: str | None, *, backed: bool = False) -> Any:
    from .readers import read_expression

    t0 = time.perf_counter()
    adata = read_expression(path, meta=meta, backed=backed)
    log.info("read %s: %d cells x %d genes%s%s (%.1f s)", path, adata.n_obs, adata.n_vars,
             f", metadata from {meta}" if meta else "", " (X read from disk as needed)" if adata.isbacked else "",
             time.perf_counter() - t0)
    return adata


def _check_keys(adata: Any, keys: Sequence[tuple[str, str | None]], data: str, meta: str | None,
                *, may_be_missing: Sequence[str] = ()) -> None:
    """Every key must be a column; missing values are refused except in the options listed in
    ``may_be_missing`` (``--se-key``: train maps a missing SE to "nonSE" with a warning, as R)."""
    where = meta if meta else data
    cols = list(adata.obs.columns)
    for opt, key in keys:
        if key is None:
            continue
        if key not in adata.obs.columns:
            raise CLIError(_missing_key_message(adata, key, opt, data, meta))
        col = adata.obs[key]
        if col.isna().any() and opt in may_be_missing:
            values = col.astype(object).to_numpy()
            na = col.isna().to_numpy()
            values[~na] = col[~na].astype(str).to_numpy()
            adata.obs[key] = values
            continue
        if col.isna().any():
            n = int(col.isna().sum())
            first = adata.obs_names[col.isna().to_numpy()][0]
            raise CLIError(f"{where}: column {key!r} ({opt}) has {n} missing value(s), first for cell {first!r}")
        adata.obs[key] = col.astype(str).to_numpy()


_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_BARCODE = re.compile(r"^[ACGTN]{8,}([-_.]\w+)?$")


def _share(names: Any, pattern: re.Pattern[str], n: int = 200) -> float:
    vals = [str(v) for v in list(names[:n])]
    return sum(bool(pattern.match(v)) for v in vals) / len(vals) if vals else 0.0


def _transposed_hint(adata: Any, key: str) -> str:
    """Why the data may be genes x cells instead of cells x genes ("" when nothing suggests it)."""
    if key in adata.var.columns:
        return f"{key!r} is a column of var, the genes' table"
    if _share(adata.obs_names, _ENSEMBL) > 0.5:
        return f"the cell ids look like genes ({', '.join(map(repr, map(str, adata.obs_names[:2])))})"
    if _share(adata.var_names, _BARCODE) > 0.5:
        return f"the gene names look like cell barcodes ({', '.join(map(repr, map(str, adata.var_names[:2])))})"
    return ""


def _missing_key_message(adata: Any, key: str, opt: str, data: str, meta: str | None) -> str:
    """The message for a metadata column that is not there, saying what is probably wrong."""
    cols = [str(c) for c in adata.obs.columns]
    shown = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
    where = meta if meta else data
    msg = f"{where}: no column {key!r} for {opt}"
    transposed = _transposed_hint(adata, key)
    if transposed:
        return (f"{msg}: {transposed}; {data} may be genes x cells: transpose it (cells must be rows of an .h5ad; "
                "in Python: adata.T.write_h5ad(...))" + (f" (columns: {shown})" if cols else ""))
    if not cols and meta is None:
        return (f"{msg}: {data} has no cell metadata columns; pass --meta FILE, a table with the cell ids in its "
                f"first column and a {key!r} column")
    return f"{msg} (columns: {shown or 'none'})"


def _free_layer(adata: Any, name: str) -> str:
    """``name``, or ``name_1``, ``name_2``... when ``adata.layers`` already has it."""
    out, i = name, 0
    while out in adata.layers:
        i += 1
        out = f"{name}_{i}"
    return out


def _check_matrix_options(adata: Any, args: argparse.Namespace, func: Any) -> None:
    """--layer / --use-raw name a matrix the data have, and the API takes them."""
    if args.use_raw:
        if not _takes(func, "use_raw"):
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
    from ._input_data import layer_names

    have = layer_names(adata)
    if layer not in have:
        raise CLIError(f"{data}: no layer {layer!r} for --layer (layers: {', '.join(map(str, have[:12])) or 'none'})")


def _normalize(adata: Any, data: str, layer: str | None = None) -> str | None:
    """Log-normalise the raw counts in X, or in ``layers[layer]``, keeping the counts.

    From X: X becomes log-normalised and the counts move to ``layers["counts"]`` (``counts_1``...
    when taken). From a layer: the layer stays as it is and the log-normalised matrix goes to a new
    layer ``<layer>_lognorm``, whose name is returned (X is left alone); None for X.
    """
    import numpy as np
    import scipy.sparse as sp

    from .preprocessing import log_normalize

    x = adata.X if layer is None else adata.layers[layer]
    if sp.issparse(x):
        coo = x.tocoo()
        neg = np.flatnonzero(coo.data < 0)
        first = (int(coo.row[neg[0]]), int(coo.col[neg[0]])) if neg.size else None
        n_neg = int(neg.size)
    else:
        neg_mask = np.asarray(x) < 0
        n_neg = int(neg_mask.sum())
        first = tuple(int(v) for v in np.unravel_index(int(np.argmax(neg_mask)), neg_mask.shape)) if n_neg else None
    if first is not None:
        i, j = first
        raise CLIError(f"{data}: --normalize needs raw counts, but {n_neg} value(s) are negative, first for cell "
                       f"{str(adata.obs_names[i])!r}, gene {str(adata.var_names[j])!r}: {float(x[i, j])!r}")
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


def _takes(func: Any, name: str) -> bool:
    import inspect

    return name in inspect.signature(func).parameters


@contextlib.contextmanager
def _expression_in(adata: Any, func: Any, layer: str | None, use_raw: bool = False) -> Iterator[dict[str, Any]]:
    """The keyword arguments that make ``func`` read ``layers[layer]`` (``layer=`` when it takes
    one, else the layer is put in X for the call and X restored after) or ``adata.raw``."""
    if use_raw:
        yield {"use_raw": True}
        return
    if layer is None:
        yield {}
        return
    if _takes(func, "layer"):
        yield {"layer": layer}
        return
    orig = adata.X
    adata.X = adata.layers[layer]
    try:
        yield {}
    finally:
        adata.X = orig


def _log_cells_per_type(adata: Any, key: str) -> None:
    counts = adata.obs[key].astype(str).value_counts(sort=False).sort_index()
    shown = ", ".join(f"{ct} {int(n)}" for ct, n in list(counts.items())[:40]) + (", ..." if len(counts) > 40 else "")
    log.info("cells per cell type (%s): %s", key, shown)


def _load_model(path: str) -> Any:
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in (".rds", ".tsv") or p.name.lower().endswith(".tsv.gz"):
        from .io import read_r_models

        if not p.exists():
            raise CLIError(f"{path}: no such file or directory")
        return read_r_models(p)
    from .model import load_model

    if not p.exists():
        raise CLIError(f"{path}: no such file or directory")
    return load_model(p)


def _input_error(files: str, exc: BaseException) -> CLIError:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return CLIError(f"{files}: {_one_line(msg)}")


def _table_suffix(path: str) -> str:
    low = path.lower()
    for s in (".tsv.gz", ".csv.gz", ".tsv", ".csv", ".parquet", ".txt"):
        if low.endswith(s):
            return s
    raise CLIError(f"{path}: unknown table type; use a .tsv, .csv (optionally .gz) or .parquet file name")


def _write_table(df: Any, tmp: Path, suffix: str) -> None:
    out = df.copy()
    out.attrs = {}  # the run summary is not table content (it goes to --write-h5ad's uns)
    if suffix == ".parquet":
        out.index.name = out.index.name or "cell"
        out.to_parquet(tmp)
    else:
        sep = "," if suffix.startswith(".csv") else "\t"
        out.to_csv(tmp, sep=sep, index_label=out.index.name or "cell")


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


# -- commands --------------------------------------------------------------------------------------
def _resolve_run_index(args: argparse.Namespace) -> tuple[int | None, str]:
    if args.run_index is not None:
        return args.run_index, "--run-index"
    env = os.environ.get(RUN_INDEX_ENV)
    if env is None or env.strip() == "":
        return None, ""
    try:
        value = int(env)
    except ValueError:
        raise CLIError(f"${RUN_INDEX_ENV}={env!r} is not an integer run index; pass --run-index") from None
    if value < 0:
        raise CLIError(f"${RUN_INDEX_ENV}={value} is negative; pass --run-index")
    return value, f"${RUN_INDEX_ENV}"


def _cmd_train(args: argparse.Namespace) -> int:
    from ._atomic import atomic_outputs, check_outputs

    run_index, origin = _resolve_run_index(args)
    if run_index is not None and run_index >= args.runs:
        raise CLIError(
            f"run index {run_index} (from {origin}) is not below --runs {args.runs}: pass --runs R, the number "
            "of runs of the ensemble; run indexes are 0..R-1 (a Slurm array of R tasks is --array=0-<R-1>)")
    check_outputs([args.out], force=args.force)
    adata = _read_data(args.data, args.meta)
    _check_keys(adata, [("--celltype-key", args.celltype_key), ("--se-key", args.se_key),
                        ("--sample-key", args.sample_key)], args.data, args.meta, may_be_missing=("--se-key",))
    from ._train import train
    from .model import RecoveryModel

    _check_matrix_options(adata, args, train)
    _log_cells_per_type(adata, args.celltype_key)
    layer = _normalize(adata, args.data, args.layer) if args.normalize else args.layer

    kw = dict(celltype_key=args.celltype_key, se_key=args.se_key, sample_key=args.sample_key,
              n_features=args.n_features, n_features_per_se=args.n_features_per_se,
              progress=not args.quiet)
    files = args.data + (f" with {args.meta}" if args.meta else "")
    t0 = time.perf_counter()
    try:
        with _expression_in(adata, train, layer, args.use_raw) as layer_kw:
            if run_index is None:
                log.info("training %d run(s), seeds %d..%d", args.runs, args.seed, args.seed + args.runs - 1)
                model = train(adata, seed=args.seed, n_runs=args.runs, **kw, **layer_kw)
            else:
                seed = args.seed + run_index
                log.info("training run %d of %d (from %s) with seed %d + %d = %d", run_index, args.runs,
                         origin, args.seed, run_index, seed)
                model = train(adata, seed=seed, n_runs=1, **kw, **layer_kw)
                params = model.params
                params.update(run_index=run_index, runs_total=args.runs, base_seed=args.seed, seed=seed,
                              run_index_from=origin)
                model = RecoveryModel({ct: model[ct] for ct in model}, params=params, runs=model.runs,
                                      source=model.source)
    except (ValueError, KeyError, TypeError) as exc:
        raise _input_error(files, exc) from exc
    log.info("trained %d cell type(s) in %.1f s", len(model), time.perf_counter() - t0)
    with atomic_outputs([args.out], force=args.force) as (tmp,):
        model.save(tmp)
    log.info("wrote %s", args.out)
    return 0


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from ._atomic import atomic_outputs, check_outputs

    check_outputs([args.out], force=args.force)
    models = []
    for path in args.models:
        models.append((path, _load_model(path)))
    models = _order_runs(models)
    from ._aggregate import aggregate

    t0 = time.perf_counter()
    try:
        ens = aggregate([m for _, m in models], delta_threshold=args.delta_threshold,
                        min_model_fraction=args.min_model_fraction)
    except (ValueError, KeyError, TypeError) as exc:
        raise _input_error(", ".join(args.models[:3]) + (", ..." if len(args.models) > 3 else ""), exc) from exc
    ens = _ensemble_params(ens, [m for _, m in models])
    log.info("aggregated %d run(s) into %d cell type(s) in %.1f s", len(models), len(ens), time.perf_counter() - t0)
    with atomic_outputs([args.out], force=args.force) as (tmp,):
        ens.save(tmp)
    log.info("wrote %s", args.out)
    return 0


_RUN_KEYS = ("run_index", "runs_total", "base_seed", "run_index_from")


def _ensemble_params(ens: Any, runs: list[Any]) -> Any:
    """Parameters of an ensemble of ``train --run-index`` runs, as ``train(..., n_runs=R)`` records
    them: the base seed, the number of runs and their seeds (not those of run 0)."""
    params = ens.params
    if not all("run_index" in r.params for r in runs):
        return ens
    from .model import RecoveryModel

    for k in _RUN_KEYS:
        params.pop(k, None)
    params.update(seed=runs[0].params.get("base_seed"), n_runs=len(runs),
                  seeds=[r.params.get("seed") for r in runs],
                  run_indexes=[r.params.get("run_index") for r in runs])
    return RecoveryModel({ct: ens[ct] for ct in ens}, params=params, runs=ens.runs, source=ens.source)


def _order_runs(models: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Put runs written by ``train --run-index`` in run-index order; refuse repeated runs/seeds."""
    idx = [m.params.get("run_index") for _, m in models]
    if len(models) > 1 and all(isinstance(i, int) for i in idx):
        by_index: dict[int, str] = {}
        for (path, _), i in zip(models, idx):
            if i in by_index:
                raise CLIError(f"{path}: run index {i} is also the run index of {by_index[i]} (the same run twice)")
            by_index[i] = path
        bases = {m.params.get("base_seed") for _, m in models}
        if len(bases) > 1:
            raise CLIError(f"{models[0][0]}: the runs have different base seeds ({sorted(map(str, bases))}); "
                           "they are not runs of one ensemble")
        totals = {m.params.get("runs_total") for _, m in models}
        if len(totals) == 1:
            total = totals.pop()
            if isinstance(total, int) and total != len(models):
                have = set(idx)
                missing = [k for k in range(total) if k not in have]
                warnings.warn(f"aggregating {len(models)} of the {total} planned runs"
                              + (f"; missing run indexes: {missing[:20]}" if missing else ""), UserWarning, stacklevel=2)
        models = [mp for _, mp in sorted(zip(idx, models), key=lambda t: t[0])]
    seeds: dict[Any, str] = {}
    for path, m in models:
        s = m.params.get("seed")
        if s is None or m.runs:
            continue
        if s in seeds:
            raise CLIError(f"{path}: trained with seed {s} like {seeds[s]}; runs of an ensemble must differ in "
                           "seed (use 'ecorecover train --run-index', which derives it)")
        seeds[s] = path
    return models


def _cmd_recover(args: argparse.Namespace) -> int:
    from ._atomic import atomic_outputs, check_outputs

    suffix = _table_suffix(args.out)
    if suffix == ".parquet" and not _has_pyarrow():
        raise CLIError(f"{args.out}: writing .parquet needs pyarrow (pip install pyarrow); or use .tsv/.csv")
    outs = [args.out] + ([args.write_h5ad] if args.write_h5ad else [])
    if args.write_h5ad and not args.write_h5ad.lower().endswith(".h5ad"):
        raise CLIError(f"{args.write_h5ad}: --write-h5ad needs a file name ending in .h5ad")
    check_outputs(outs, force=args.force)
    if args.published:
        from .io import load_published_models

        model = load_published_models(args.published)
        model_name = args.published
    else:
        model = _load_model(args.model)
        model_name = args.model
    log.info("model %s: %d cell type(s), %d SE(s)", model_name, len(model), len(model.se_names))
    from ._recover import recover

    # .h5ad without --normalize: recovery streams the model genes from disk (memory stays flat)
    backed = not args.normalize and not args.use_raw and (args.layer is None or _takes(recover, "layer"))
    adata = _read_data(args.data, args.meta, backed=backed)
    _check_keys(adata, [("--celltype-key", args.celltype_key)], args.data, args.meta)
    _check_matrix_options(adata, args, recover)
    var = adata.raw.var if args.use_raw else adata.var
    if args.gene_symbols is not None and args.gene_symbols not in var.columns:
        cols = [str(c) for c in var.columns]
        raise CLIError(f"{args.data}: no var column {args.gene_symbols!r} for --gene-symbols (var columns: "
                       f"{', '.join(cols[:12]) + (', ...' if len(cols) > 12 else '') or 'none'})")
    _log_cells_per_type(adata, args.celltype_key)
    layer = _normalize(adata, args.data, args.layer) if args.normalize else args.layer

    files = args.data + (f" with {args.meta}" if args.meta else "") + f" and {model_name}"
    kw: dict[str, Any] = dict(celltype_key=args.celltype_key, min_score=args.min_score, mode=args.mode,
                              key_added=args.key_added, gene_symbols=args.gene_symbols, progress=not args.quiet)
    if _takes(recover, "overwrite"):
        # obs keys matter only in --write-h5ad's file: replacing a key there needs --force
        kw["overwrite"] = args.force or not args.write_h5ad
    t0 = time.perf_counter()
    try:
        with _expression_in(adata, recover, layer, args.use_raw) as layer_kw:
            table = recover(adata, model, **kw, **layer_kw)
    except (ValueError, KeyError, TypeError) as exc:
        raise _input_error(files, exc) from exc
    dt = time.perf_counter() - t0
    log.info("recovered %d cells in %.1f s (%.0f cells/s)", len(table), dt, len(table) / max(dt, 1e-9))
    with atomic_outputs(outs, force=args.force) as temps:
        _write_table(table, temps[0], suffix)
        if args.write_h5ad:
            adata.write_h5ad(temps[1])
    log.info("wrote %s", ", ".join(outs))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    model = _load_model(args.model)
    out = sys.stdout
    params = model.params
    print(f"model: {args.model}", file=out)
    print(f"source: {model.source or 'unknown'}", file=out)
    if (model.source or "").startswith("R:"):
        print(f"format: R SpatialEcoTyper W matrices (read by ecorecover {params.get('ecorecover_version', '?')})", file=out)
    else:
        print(f"written by: ecorecover {params.get('ecorecover_version', '?')}", file=out)
    if model.runs:
        print(f"ensemble of {len(model.runs)} run(s)", file=out)
    elif "run_index" in params:
        print(f"run {params['run_index']} of {params.get('runs_total', '?')} (seed {params.get('seed')})", file=out)
    ses = model.se_names
    print(f"cell types ({len(model)}): {', '.join(model.cell_types)}", file=out)
    print(f"SEs ({len(ses)}): {', '.join(ses)}", file=out)
    print(f"genes: {len(model.genes)}", file=out)
    width = max([len("cell type")] + [len(c) for c in model.cell_types])
    print(f"{'cell type':<{width}}  features  genes  SEs", file=out)
    for ct in model.cell_types:
        w = model[ct]
        genes = {f[:-5] if f.endswith(("__pos", "__neg")) else f for f in w.index}
        print(f"{ct:<{width}}  {w.shape[0]:>8}  {len(genes):>5}  {w.shape[1]:>3}  ({', '.join(map(str, w.columns))})", file=out)
    shown = {k: v for k, v in params.items() if k != "ecorecover_version"}
    if shown:
        print("parameters:", file=out)
        for k, v in shown.items():
            text = json.dumps(v) if not isinstance(v, str) else v
            if len(text) > 200:
                text = text[:197] + "..."
            print(f"  {k}: {text}", file=out)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from ._atomic import atomic_outputs, check_outputs

    out_files: list[Path] = []
    if args.out_dir:
        d = Path(args.out_dir)
        if d.exists() and not d.is_dir():
            raise CLIError(f"{d}: exists and is not a directory")
        out_files = [d / "train.h5ad", d / "held_out.h5ad", d / "model.h5", d / "recovered.tsv"]
        if d.is_dir():
            check_outputs(out_files, force=args.force)
        elif not d.parent.is_dir():
            raise CLIError(f"{d}: its parent directory {d.parent} does not exist")
    from ._recover import recover
    from ._train import train
    from .preprocessing import log_normalize
    from .simulate import NONSE_LABEL, simulate_split

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    train_ad, test_ad = simulate_split(n_cells=args.cells, n_held_out=args.held_out, seed=args.seed)
    times["simulate"] = time.perf_counter() - t0
    t = time.perf_counter()
    train_ad.layers["counts"] = train_ad.X
    test_ad.layers["counts"] = test_ad.X
    train_ad.X = log_normalize(train_ad.X)
    test_ad.X = log_normalize(test_ad.X)
    times["normalise"] = time.perf_counter() - t
    n_types = train_ad.obs["CellType"].nunique()
    log.info("simulated %d training cells (%d samples, %d cell types, %d genes) and %d held-out cells (seed %d)",
             train_ad.n_obs, train_ad.obs["Sample"].nunique(), n_types, train_ad.n_vars, test_ad.n_obs, args.seed)
    t = time.perf_counter()
    model = train(train_ad, celltype_key="CellType", se_key="SE", sample_key="Sample", seed=2024,
                  n_runs=args.runs, progress=not args.quiet)
    times["train"] = time.perf_counter() - t
    # the true labels (kept apart from the calls recover() writes into obs)
    truth = test_ad.obs["SE"].astype(str).to_numpy().copy()
    ct = test_ad.obs["CellType"].astype(str).to_numpy().copy()
    test_ad.obs["SE_true"] = truth
    t = time.perf_counter()
    table = recover(test_ad, model, celltype_key="CellType", mode=args.mode, progress=not args.quiet)
    times["recover"] = time.perf_counter() - t
    eligible = (truth != NONSE_LABEL) & np.isin(ct, model.cell_types)
    pred = table["SE"].astype(str).to_numpy()
    correct = pred[eligible] == truth[eligible]
    acc = float(correct.mean()) if eligible.any() else float("nan")
    if out_files:
        t = time.perf_counter()
        out_files[0].parent.mkdir(exist_ok=True)
        with atomic_outputs(out_files, force=args.force) as temps:
            train_ad.write_h5ad(temps[0])
            test_ad.write_h5ad(temps[1])
            model.save(temps[2])
            table.to_csv(temps[3], sep="\t", index_label="cell")
        times["write"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    print(f"ecorecover demo (seed {args.seed}): trained on {train_ad.n_obs} simulated cells "
          f"({len(model)} cell types, {len(model.se_names)} SE labels, {args.runs} run(s)); "
          f"recovered {test_ad.n_obs} held-out cells ({args.mode} mode)")
    print("per cell type (held-out cells with an SE):")
    for c in model.cell_types:
        m = eligible & (ct == c)
        if m.any():
            print(f"  {c:<12} {float((pred[m] == truth[m]).mean()):.3f}  ({int(m.sum())} cells)")
    print(f"accuracy: {acc:.3f} ({int(correct.sum())} of {int(eligible.sum())} cells recovered in their true SE)")
    print("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()) + f"; total {total:.2f} s")
    if out_files:
        print(f"wrote {', '.join(str(f) for f in out_files)}")
    return 0


# -- entry point -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _cli_environment(verbose: bool, quiet: bool) -> Iterator[None]:
    handler = _setup_logging(verbose, quiet)
    root = logging.getLogger("ecorecover")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            yield
    finally:
        root.removeHandler(handler)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from ._atomic import OutputExistsError

    return (CLIError, OutputExistsError, OSError, ValueError, KeyError, TypeError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ecorecover`` command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    prog = f"ecorecover {args.command}"
    with _cli_environment(args.verbose, args.quiet):
        try:
            return int(args.func(args))
        except BrokenPipeError:  # e.g. 'ecorecover inspect MODEL | head'
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return 1
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except _expected_errors() as exc:
            if args.verbose:
                traceback.print_exc(file=sys.stderr)
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            if isinstance(exc, OSError) and not isinstance(exc, FileExistsError) and exc.filename and \
                    str(exc.filename) not in str(msg):
                msg = f"{exc.filename}: {exc.strerror or msg}"
            print(f"{prog}: error: {cli_spelling(_one_line(msg))}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001 - an internal error: one line, traceback with -v
            if args.verbose:
                traceback.print_exc(file=sys.stderr)
            print(f"{prog}: internal error: {type(exc).__name__}: {cli_spelling(_one_line(exc))} "
                  "(run with -v for the traceback)", file=sys.stderr)
            return 1


if __name__ == "__main__":  # python -m ecorecover.cli
    sys.exit(main())
