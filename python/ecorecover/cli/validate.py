"""``ecorecover validate``: the spatial checks of recovered SEs, written as a report directory.

Reads a per-cell table (``.tsv``/``.csv(.gz)``, first column cell ids) or an ``.h5ad`` and writes,
into ``--out DIR`` (created atomically: a temporary directory renamed into place when everything
is written; an existing report is replaced only with ``--force``, and only if it is a report):

- ``colocalization_observed.tsv``, ``colocalization_zscores.tsv``, ``colocalization_se_test.tsv``
  and ``colocalization.png`` (:func:`ecorecover.spatial.colocalization`);
- ``moran.tsv`` and ``spatial.png`` (:func:`ecorecover.spatial.moran`, SEs in space);
- with ``--markers FILE.rds`` and expression data (``.h5ad``): ``markers.tsv`` and ``markers.png``
  (:func:`ecorecover.marker_expression`);
- ``report.json``: what was run, with the parameters and the seeds used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from .session import log

__all__ = ["MANIFEST", "run"]


#: The file that marks a directory as a report of ``ecorecover validate`` (and so replaceable).
MANIFEST = "report.json"


def _read(path: str) -> Any:
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if p.suffix.lower() == ".h5ad":
        import anndata as ad  # type: ignore[import-untyped, unused-ignore]

        return ad.read_h5ad(p)
    from ..readers import read_meta

    table: pd.DataFrame = read_meta(p)
    for c in table.columns:  # coordinates come back as strings from a label-safe reader
        with contextlib.suppress(ValueError, TypeError):
            table[c] = pd.to_numeric(table[c])
    return table


def _coords(args: argparse.Namespace) -> Any:
    if args.coords is None:
        return None
    if len(args.coords) == 1:
        return args.coords[0]
    if len(args.coords) == 2:
        return tuple(args.coords)
    raise ValueError(f"--coords takes two column names or one .obsm key, got {len(args.coords)} values")


def _obs(data: Any) -> Any:
    return data.obs if hasattr(data, "obs") else data


def _checks(data: Any, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import numpy as np

    from .. import spatial
    from ..pl import colocalization_heatmap
    from ..pl import spatial as spatial_plot

    obs = _obs(data)
    coords = _coords(args)
    if args.state_key not in obs.columns:
        obs[args.state_key] = spatial.cell_states(data, se_key=args.se_key, celltype_key=args.celltype_key)
    seed = args.seed if args.seed is not None else int(np.random.default_rng().integers(0, 2**31 - 1))
    show = not args.quiet
    t0 = time.perf_counter()
    co = spatial.colocalization(data, state_key=args.state_key, celltype_key=args.celltype_key, coords=coords,
                                radius=args.radius, k=args.k, min_cells=args.min_cells, n_perm=args.n_perm,
                                seed=seed, n_jobs=args.n_jobs, progress=show)
    log.info("colocalization: %d states, %d permutations (%.1f s)", len(co.observed), args.n_perm, time.perf_counter() - t0)
    co.observed.to_csv(out / "colocalization_observed.tsv", sep="\t", index_label="CellState")
    co.zscores.to_csv(out / "colocalization_zscores.tsv", sep="\t", index_label="CellState")
    import pandas as pd

    pd.DataFrame({"Zscore": co.se_zscores, "Pval": co.pvalues}).to_csv(
        out / "colocalization_se_test.tsv", sep="\t", index_label="SE")
    _save(colocalization_heatmap(co), out / "colocalization.png")
    t0 = time.perf_counter()
    mo = spatial.moran(data, se_key=args.se_key, celltype_key=args.celltype_key, coords=coords, k=args.moran_k,
                       n_perm=args.n_perm, seed=seed, n_jobs=args.n_jobs, progress=show)
    log.info("Moran's I: %d SEs (%.1f s)", len(mo), time.perf_counter() - t0)
    mo.to_csv(out / "moran.tsv", sep="\t", index_label="SE")
    _save(spatial_plot(data, se_key=args.se_key, coords=coords, sample_key=args.sample_key), out / "spatial.png")
    return {"seed": seed, "colocalization_states": len(co.observed), "moran_ses": len(mo)}


def _markers(data: Any, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    if args.markers is None:
        return {"markers": "not run (no --markers)"}
    if not hasattr(data, "X"):
        raise ValueError(f"{args.data}: --markers needs expression data (an .h5ad), not a metadata table")
    from .. import marker_expression, read_r_markers
    from ..pl import marker_heatmap

    table = marker_expression(data, groupby=args.se_key, genesets=read_r_markers(args.markers), layer=args.layer)
    table.to_csv(out / "markers.tsv", sep="\t", index_label="geneset")
    _save(marker_heatmap(table), out / "markers.png")
    return {"markers": str(args.markers), "gene_sets": len(table)}


def _save(ax: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    a = ax.flat[0] if hasattr(ax, "flat") else ax
    a.figure.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(a.figure)


def _place(tmp: Path, final: Path, force: bool) -> None:
    """Move the finished report ``tmp`` onto ``final``: refuse what is not an earlier report."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise FileExistsError(f"{final}: exists and is not a report directory; choose another --out")
    if final.exists():
        if not force:
            raise FileExistsError(f"{final}: output directory exists; pass --force to replace it")
        if not (final / MANIFEST).is_file():
            raise FileExistsError(f"{final}: not a report of 'ecorecover validate' (no {MANIFEST}); not replaced")
        old = final.with_name(f".{final.name}.{secrets.token_hex(6)}.old")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.rename(tmp, final)


def run(args: argparse.Namespace) -> int:
    """Run the checks and write the report directory (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    from .. import __version__ as version

    final = Path(args.out)
    parent = final.parent if str(final.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{final}: output directory {parent} does not exist")
    if final.exists() and not args.force:
        raise FileExistsError(f"{final}: output directory exists; pass --force to replace it")
    data = _read(args.data)
    tmp = parent / f".{final.name}.{secrets.token_hex(6)}.tmp"
    tmp.mkdir()
    try:
        done = _checks(data, args, tmp)
        done.update(_markers(data, args, tmp))
        params = {k: v for k, v in vars(args).items() if k not in ("func", "quiet", "verbose", "force")}
        with open(tmp / MANIFEST, "w") as fh:
            json.dump({"ecorecover": version, "command": "validate", "params": params, "results": done}, fh, indent=1)
        _place(tmp, final, args.force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {final}/: " + ", ".join(sorted(p.name for p in final.iterdir())))
    return 0
