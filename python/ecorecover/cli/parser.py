"""The argument parser of ``ecorecover``: :func:`build_parser`, one function per command's options.

Each command's ``func`` default is the ``run`` of its module (looked up when the parser is built).
"""

from __future__ import annotations

import argparse
import inspect
from typing import TYPE_CHECKING, Any, NoReturn

from . import aggregate as aggregate_cmd
from . import demo as demo_cmd
from . import inspect as inspect_cmd
from . import recover as recover_cmd
from . import train as train_cmd
from . import validate as validate_cmd
from .argtypes import finite_float, int_or_none, nonneg_int, positive_int, unit_float
from .messages import one_line
from .train import RUN_INDEX_ENV

__all__ = ["build_parser"]

_DATA_HELP = ("expression data: .h5ad, 10x .h5, 10x matrix.mtx directory, or a genes x cells "
              ".tsv/.csv(.gz) table with gene names in the first column")
_META_HELP = "cell metadata table (.tsv/.csv(.gz), first column cell ids), aligned to the cells by id"
_LAYER_HELP = ("use this layer of an .h5ad (layers[NAME]) instead of X; with --normalize it holds the raw "
               "counts (default: X)")
_RAW_HELP = "use the log-normalised expression in an .h5ad's raw (adata.raw.X, scanpy's convention) instead of X"
_NORMALIZE_HELP = "log-normalise raw counts first (Seurat LogNormalize)"

class CLIParser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: ...; see --help``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[CLIParser]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ecorecover`` (one subparser per command)."""
    common = CLIParser(add_help=False)
    g = common.add_argument_group("output and logging")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress messages (warnings and errors still show)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks on errors")

    force = CLIParser(add_help=False)
    force.add_argument("--force", action="store_true", help="overwrite existing output files")

    p = CLIParser(
        prog="ecorecover",
        description="Train SE recovery models on annotated single-cell data, combine runs into "
        "ensembles and recover spatial-ecotype cell states in new data.",
        epilog="Run 'ecorecover COMMAND --help' for a command's options. Exit codes: 0 success, "
        "2 bad usage or input, 1 internal error.",
    )
    from .. import __version__

    p.add_argument("--version", action="version", version=f"ecorecover {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=CLIParser)
    sub.required = True
    _add_train(sub, [common, force])
    _add_aggregate(sub, [common, force])
    _add_recover(sub, [common, force])
    _add_inspect(sub, [common])
    _add_demo(sub, [common, force])
    _add_validate(sub, [common, force])
    return p


def _add_train(sub: Subparsers, parents: list[CLIParser]) -> None:
    t = sub.add_parser(
        "train", parents=parents, help="train a recovery model (one run of an ensemble with --run-index)",
        description="Train cell-type-specific SE recovery models (R NMFGenerateWList). With --runs R "
        "and no run index, trains the R-run ensemble in this process. With --run-index I (default: "
        f"${RUN_INDEX_ENV} when set) trains only run I, with seed S + I, for a job array; "
        "'ecorecover aggregate' of runs 0..R-1 then equals the in-process ensemble exactly.",
    )
    t.add_argument("data", metavar="DATA", help=_DATA_HELP)
    t.add_argument("--meta", metavar="META", help=_META_HELP + " (optional if DATA is .h5ad with the keys in obs)")
    t.add_argument("--out", metavar="MODEL", required=True, help="output model file (.h5)")
    t.add_argument("--celltype-key", default="CellType", metavar="KEY", help="metadata column of cell types (default: %(default)s)")
    t.add_argument("--se-key", default="SE", metavar="KEY", help="metadata column of SE labels (default: %(default)s)")
    t.add_argument("--sample-key", default=None, metavar="KEY", help="metadata column of samples (default: none; R's Sample = NULL)")
    t.add_argument("--n-features", type=positive_int, default=300, metavar="N", help="top-variance genes per cell type (default: %(default)s)")
    t.add_argument("--n-features-per-se", type=int_or_none, default=50, metavar="N|none",
                   help="genes kept per SE; 'none' keeps all (R's Inf, as the ensemble tutorial) (default: %(default)s)")
    t.add_argument("--seed", type=nonneg_int, default=2024, metavar="S", help="base seed; run I uses S + I (default: %(default)s)")
    t.add_argument("--runs", type=positive_int, default=1, metavar="R", help="number of runs of the ensemble (default: %(default)s)")
    t.add_argument("--run-index", type=nonneg_int, default=None, metavar="I",
                   help=f"train only run I (0 <= I < R) with seed S + I (default: ${RUN_INDEX_ENV} when set)")
    t.add_argument("--normalize", action="store_true", help=_NORMALIZE_HELP)
    t.add_argument("--layer", metavar="NAME", default=None, help=_LAYER_HELP)
    t.add_argument("--use-raw", action="store_true", help=_RAW_HELP)
    t.set_defaults(func=train_cmd.run)


def _add_aggregate(sub: Subparsers, parents: list[CLIParser]) -> None:
    a = sub.add_parser(
        "aggregate", parents=parents, help="combine runs into an ensemble model",
        description="Combine trained runs into one ensemble model (R AggregateRecoverModels). Runs "
        "written by 'ecorecover train --run-index' are put in run-index order whatever the order "
        "of the files on the command line.",
    )
    a.add_argument("models", metavar="MODEL", nargs="+", help="model files of the runs")
    a.add_argument("--out", metavar="MODEL", required=True, help="output model file (.h5)")
    a.add_argument("--delta-threshold", type=finite_float, default=0.01, metavar="X", help="default: %(default)s")
    a.add_argument("--min-model-fraction", type=finite_float, default=0.5, metavar="X", help="default: %(default)s")
    a.set_defaults(func=aggregate_cmd.run)


def _add_recover(sub: Subparsers, parents: list[CLIParser]) -> None:
    r = sub.add_parser(
        "recover", parents=parents, help="recover SEs of the cells of a dataset",
        description="Recover the SE of every cell (R RecoverSE) and write a table: one row per "
        "cell, columns CellType, InitSE, SE, PredScore, then one score column per SE.",
    )
    r.add_argument("data", metavar="DATA", help=_DATA_HELP)
    r.add_argument("--meta", metavar="META", help=_META_HELP + " (optional if DATA is .h5ad with the cell types in obs)")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="MODEL", help="model file written by 'ecorecover train' or 'aggregate', or R "
                     "models (.rds/.tsv W matrices or a directory of them, used as given like R's explicit Ws)")
    src.add_argument("--published", metavar="DIR",
                     help="directory of the published MERSCOPE models (MERSCOPE_W_v1_<CellType>.rds|.tsv and "
                     "SE_CellStates.txt); R's default-branch post-processing is applied")
    r.add_argument("--celltype-key", default="CellType", metavar="KEY", help="metadata column of cell types (default: %(default)s)")
    r.add_argument("--min-score", type=unit_float, default=0.0, metavar="X", help="cells scoring below are 'NonSE' (default: %(default)s)")
    r.add_argument("--mode", choices=("exact", "fast"), default="exact", help="exact = R's algorithm (default); fast = per-cell solver")
    r.add_argument("--out", metavar="TABLE", required=True, help="output table: .tsv, .csv (optionally .gz) or .parquet (needs pyarrow)")
    r.add_argument("--write-h5ad", metavar="OUT.h5ad", default=None,
                   help="also write the data with the results in obs/obsm/uns (with --normalize: X log-normalised, "
                   "the raw counts in layers['counts'])")
    r.add_argument("--normalize", action="store_true", help=_NORMALIZE_HELP)
    r.add_argument("--layer", metavar="NAME", default=None, help=_LAYER_HELP)
    r.add_argument("--use-raw", action="store_true", help=_RAW_HELP)
    r.add_argument("--gene-symbols", metavar="COLUMN", default=None,
                   help="match the model's genes to this var column (e.g. gene symbols when var names are "
                   "Ensembl ids) instead of the var names")
    r.add_argument("--key-added", metavar="KEY", default=_api_default("recover", "key_added", "SE_recovered"),
                   help="obs/obsm/uns key of the results in --write-h5ad's file; an existing key is replaced only "
                   "with --force (default: %(default)s)")
    r.set_defaults(func=recover_cmd.run)


def _add_inspect(sub: Subparsers, parents: list[CLIParser]) -> None:
    i = sub.add_parser(
        "inspect", parents=parents, help="describe a model file",
        description="Print a model's cell types, SEs, feature counts and provenance. Also reads R "
        "models (.rds/.tsv files or a directory of them).",
    )
    i.add_argument("model", metavar="MODEL", help="model file (.h5), or R models (.rds/.tsv or a directory)")
    i.set_defaults(func=inspect_cmd.run)


def _add_demo(sub: Subparsers, parents: list[CLIParser]) -> None:
    d = sub.add_parser(
        "demo", parents=parents, help="simulate data, train, recover, report accuracy",
        description="Simulate a small dataset with planted SEs (ecorecover.simulate), train a model, "
        "recover the SEs of a held-out simulated dataset and print the accuracy and timings. "
        "Deterministic for a given --seed.",
    )
    d.add_argument("--seed", type=nonneg_int, default=1, metavar="S", help="simulation seed (default: %(default)s)")
    d.add_argument("--cells", type=positive_int, default=6000, metavar="N", help="training cells (default: %(default)s)")
    d.add_argument("--held-out", type=positive_int, default=3000, metavar="N", help="held-out cells (default: %(default)s)")
    d.add_argument("--runs", type=positive_int, default=1, metavar="R", help="ensemble runs (default: %(default)s)")
    d.add_argument("--mode", choices=("exact", "fast"), default="exact", help="recovery mode (default: %(default)s)")
    d.add_argument("--out-dir", metavar="DIR", default=None,
                   help="also write train.h5ad, held_out.h5ad, model.h5 and recovered.tsv there, to try the other commands on")
    d.set_defaults(func=demo_cmd.run)


def _add_validate(sub: Subparsers, parents: list[CLIParser]) -> None:
    v = sub.add_parser(
        "validate", parents=parents, help="spatial checks of recovered SEs: colocalization, Moran's I, markers",
        description="Validate recovered SEs in space, as R's tutorial for single-cell spatial data does: "
        "colocalization of the cell states of each SE (R Colocalization), spatial autocorrelation of each SE "
        "(R ComputeNormalizedMoranI) and, with --markers and expression data, the SE marker expression "
        "(R AverageMarkerExpression). Writes TSV tables and PNG figures into --out.",
    )
    v.add_argument("data", metavar="DATA", help="per-cell table (.tsv/.csv(.gz), first column cell ids) or .h5ad")
    v.add_argument("--out", metavar="DIR", required=True, help="report directory to create")
    v.add_argument("--coords", nargs="+", metavar="COL", default=None,
                   help="two coordinate columns (e.g. --coords X Y) or one .obsm key (e.g. spatial); default: "
                   "obsm['spatial'] when present, else columns X and Y")
    v.add_argument("--se-key", default="SE", metavar="KEY", help="column of recovered SEs (default: %(default)s)")
    v.add_argument("--celltype-key", default="CellType", metavar="KEY", help="column of cell types (default: %(default)s)")
    v.add_argument("--state-key", default="CellState", metavar="KEY",
                   help="column of cell states '<SE>_<CellType>'; built from --se-key and --celltype-key when "
                   "absent (default: %(default)s)")
    v.add_argument("--sample-key", default=None, metavar="KEY", help="column of samples: one panel per sample in spatial.png")
    v.add_argument("--radius", type=finite_float, default=50.0, metavar="R", help="neighbourhood radius (default: %(default)s)")
    v.add_argument("--k", type=positive_int, default=200, metavar="K", help="neighbours per cell for colocalization (default: %(default)s)")
    v.add_argument("--min-cells", type=positive_int, default=10, metavar="N",
                   help="cells with fewer neighbours within the radius are dropped (default: %(default)s)")
    v.add_argument("--moran-k", type=positive_int, default=3, metavar="K", help="neighbours for Moran's I (default: %(default)s)")
    v.add_argument("--n-perm", type=positive_int, default=1000, metavar="N", help="permutations (default: %(default)s)")
    v.add_argument("--seed", type=nonneg_int, default=None, metavar="S",
                   help="R's set.seed(S) before each check (default: a random seed, recorded in report.json)")
    v.add_argument("--markers", metavar="FILE", default=None, help="gene sets saved by R (.rds list), e.g. SE_consensus_markers.rds")
    v.add_argument("--layer", metavar="NAME", default=None, help="layer of log-normalised expression for --markers (default: X)")
    v.add_argument("--n-jobs", type=int, default=None, metavar="N", help="threads (default: all cores)")
    v.set_defaults(func=validate_cmd.run)


def _api_default(func: str, param: str, fallback: Any) -> Any:
    """The default of ``param`` of the Python API's ``ecorecover.<func>`` (the CLI uses the same)."""
    import ecorecover

    p = inspect.signature(getattr(ecorecover, func)).parameters.get(param)
    return fallback if p is None or p.default is inspect.Parameter.empty else p.default
