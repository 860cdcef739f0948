"""``ecorecover recover``: recover the SE of every cell with a model (or the published models)
and write the table (.tsv/.csv(.gz)/.parquet), optionally the data with the results (.h5ad)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .matrices import check_matrix_options, expression_in, normalize, takes
from .messages import CLIError, input_error
from .reading import check_keys, load_model, log_cells_per_type, read_data
from .session import log

__all__ = ["run"]


def _check_outputs(args: argparse.Namespace) -> tuple[list[str], str]:
    """The output files and the table's suffix; refuse unknown types and existing files."""
    from .._atomic import check_outputs

    suffix = _table_suffix(args.out)
    if suffix == ".parquet" and not _has_pyarrow():
        raise CLIError(f"{args.out}: writing .parquet needs pyarrow (pip install pyarrow); or use .tsv/.csv")
    outs = [args.out] + ([args.write_h5ad] if args.write_h5ad else [])
    if args.write_h5ad and not args.write_h5ad.lower().endswith(".h5ad"):
        raise CLIError(f"{args.write_h5ad}: --write-h5ad needs a file name ending in .h5ad")
    check_outputs(outs, force=args.force)
    return outs, suffix


def _model(args: argparse.Namespace) -> tuple[Any, str]:
    """The model of ``--published`` or ``--model``, and its name."""
    if args.published:
        from .. import load_published_models

        model, name = load_published_models(args.published), str(args.published)
    else:
        model, name = load_model(args.model), str(args.model)
    log.info("model %s: %d cell type(s), %d SE(s)", name, len(model), len(model.se_names))
    return model, name


def _check_gene_symbols(adata: Any, args: argparse.Namespace) -> None:
    var = adata.raw.var if args.use_raw else adata.var
    if args.gene_symbols is not None and args.gene_symbols not in var.columns:
        cols = [str(c) for c in var.columns]
        raise CLIError(f"{args.data}: no var column {args.gene_symbols!r} for --gene-symbols (var columns: "
                       f"{', '.join(cols[:12]) + (', ...' if len(cols) > 12 else '') or 'none'})")


def run(args: argparse.Namespace) -> int:
    """Recover and write ``--out`` (and ``--write-h5ad``)."""
    from .. import recover
    from .._atomic import atomic_outputs

    outs, suffix = _check_outputs(args)
    model, model_name = _model(args)
    # .h5ad without --normalize: recovery streams the model genes from disk (memory stays flat)
    backed = not args.normalize and not args.use_raw and (args.layer is None or takes(recover, "layer"))
    adata = read_data(args.data, args.meta, backed=backed)
    check_keys(adata, [("--celltype-key", args.celltype_key)], args.data, args.meta)
    check_matrix_options(adata, args, recover)
    _check_gene_symbols(adata, args)
    log_cells_per_type(adata, args.celltype_key)
    layer = normalize(adata, args.data, args.layer) if args.normalize else args.layer

    files = args.data + (f" with {args.meta}" if args.meta else "") + f" and {model_name}"
    kw: dict[str, Any] = dict(celltype_key=args.celltype_key, min_score=args.min_score, mode=args.mode,
                              key_added=args.key_added, gene_symbols=args.gene_symbols, progress=not args.quiet)
    if takes(recover, "overwrite"):
        # obs keys matter only in --write-h5ad's file: replacing a key there needs --force
        kw["overwrite"] = args.force or not args.write_h5ad
    t0 = time.perf_counter()
    try:
        with expression_in(adata, recover, layer, args.use_raw) as layer_kw:
            table = recover(adata, model, **kw, **layer_kw)
    except (ValueError, KeyError, TypeError) as exc:
        raise input_error(files, exc) from exc
    dt = time.perf_counter() - t0
    log.info("recovered %d cells in %.1f s (%.0f cells/s)", len(table), dt, len(table) / max(dt, 1e-9))
    with atomic_outputs(outs, force=args.force) as temps:
        _write_table(table, temps[0], suffix)
        if args.write_h5ad:
            adata.write_h5ad(temps[1])
    log.info("wrote %s", ", ".join(outs))
    return 0


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
        import pyarrow  # type: ignore[import-not-found, import-untyped, unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True
