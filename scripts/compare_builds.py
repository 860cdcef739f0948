#!/usr/bin/env python3
"""Digest of deterministic exact-mode results of whichever ecorecover the interpreter imports.

CI runs it under the development build (editable install) and under the installed wheel and
diffs the two digests: exact-mode results must be bit-identical across builds. The workload uses
the R fixtures in tests/fixtures:

- ``nmf.update_h`` on ``recover/nmfpredict_kernel_small`` (and ``nmf.update_w`` on
  ``nmf_generate_w/nfeature150_perse20``): bytes of the result and the iteration count;
- ``preprocessing.scale`` (both methods) and ``log_normalize`` on ``scale/input.tsv``;
- ``rng.RRandom``: ``runif`` and ``sample_int`` streams;
- when ``ecorecover.recover`` exists: an exact-mode recovery of the kernel fixture's
  90 cells with its 11-SE model, with and without scaling.

Each entry is a SHA-256 of the result's bytes plus a few readable facts (shape, iterations), so
a diff names what changed. Where the module was imported from is printed to stderr, not digested.

Usage: python compare_builds.py [--fixtures DIR] [--out FILE] [--n-jobs N] [--expect-from DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _sha(a: Any) -> str:
    arr = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _frame_digest(df: pd.DataFrame) -> dict[str, Any]:
    h = hashlib.sha256()
    h.update("\t".join(map(str, df.index)).encode())
    for col in df.columns:
        h.update(str(col).encode())
        values = df[col].to_numpy()
        if values.dtype.kind in "fiub":
            h.update(np.ascontiguousarray(values).tobytes())
        else:
            h.update("\t".join(map(str, values)).encode())
    return {"sha256": h.hexdigest(), "shape": list(df.shape), "columns": [str(c) for c in df.columns]}


def _matrix(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", index_col=0, float_precision="round_trip")


def workload(fixtures: Path, n_jobs: int | None) -> dict[str, Any]:
    import ecorecover
    from ecorecover import nmf, preprocessing, rng

    out: dict[str, Any] = {"ecorecover_version": ecorecover.__version__}

    k = fixtures / "recover" / "nmfpredict_kernel_small"
    v, w, h0 = (_matrix(k / f) for f in ("V.tsv.gz", "W_used.tsv", "H0.tsv.gz"))
    h, n_iter = nmf.update_h(v.to_numpy(), w.to_numpy(), h0.to_numpy(), n_jobs=n_jobs)
    out["nmf.update_h/kernel_small"] = {"sha256": _sha(h), "shape": list(h.shape), "n_iter": int(n_iter)}

    g = fixtures / "nmf_generate_w" / "nfeature150_perse20"
    if g.is_dir():
        v2, w0 = _matrix(g / "V.tsv.gz"), _matrix(g / "W0.tsv.gz")
        fractions = _matrix(fixtures / "nmf_generate_w" / "fractions.tsv").loc[v2.columns]
        h_fixed = fractions.to_numpy().T + np.finfo(float).eps
        w_fit, n_iter_w = nmf.update_w(v2.to_numpy(), w0.to_numpy(), h_fixed, n_jobs=n_jobs)
        out["nmf.update_w/nfeature150_perse20"] = {"sha256": _sha(w_fit), "shape": list(w_fit.shape), "n_iter": int(n_iter_w)}

    x = _matrix(fixtures / "scale" / "input.tsv").to_numpy().T  # cells x genes
    for method in ("sparse", "dense"):
        z = preprocessing.scale(x, method=method, n_jobs=n_jobs)
        out[f"preprocessing.scale/{method}"] = {"sha256": _sha(z), "shape": list(z.shape)}
    counts = np.abs(np.round(x * 3.0))  # a count-like matrix derived from the fixture
    ln = preprocessing.log_normalize(counts)
    out["preprocessing.log_normalize"] = {"sha256": _sha(ln), "shape": list(ln.shape)}

    r = rng.RRandom(2024)
    out["rng.runif"] = {"sha256": _sha(r.runif(1000))}
    out["rng.sample_int"] = {"sha256": _sha(r.sample_int(500, 200))}

    recover = getattr(ecorecover, "recover", None)
    if recover is not None:
        data = _matrix(k / "input_scaled.tsv.gz")  # genes x cells, as R
        model = {"DC": _matrix(k / "W_model.tsv")}
        for scale in (False, True):
            table = recover(
                data, model, celltypes=["DC"] * data.shape[1], scale=scale, mode="exact",
                progress=False, n_jobs=n_jobs,
            )
            # R's RecoverSE columns (recover() adds a derived boolean "scored" column after them)
            table = table.drop(columns=["scored"], errors="ignore")
            out[f"recover/exact/scale={scale}"] = _frame_digest(table)
    else:
        print("compare_builds: ecorecover.recover not present, recovery skipped", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixtures", type=Path, default=here.parent / "tests" / "fixtures", help="tests/fixtures directory")
    p.add_argument("--out", type=Path, default=None, help="write the digest here (default: stdout)")
    p.add_argument("--n-jobs", type=int, default=None, help="threads (results must not depend on it)")
    p.add_argument("--expect-from", type=Path, default=None, metavar="DIR",
                   help="fail unless ecorecover is imported from inside DIR (a venv, or the source tree's python/)")
    args = p.parse_args(argv)

    import ecorecover

    pkg = Path(ecorecover.__file__).resolve().parent
    print(f"compare_builds: ecorecover {ecorecover.__version__} from {pkg} "
          f"(python {sys.version.split()[0]} at {sys.executable})", file=sys.stderr)
    if args.expect_from is not None and args.expect_from.resolve() not in pkg.parents:
        print(f"compare_builds: error: ecorecover was imported from {pkg}, not from {args.expect_from}", file=sys.stderr)
        return 1
    digest = json.dumps(workload(args.fixtures, args.n_jobs), indent=1, sort_keys=True) + "\n"
    if args.out is None:
        sys.stdout.write(digest)
    else:
        args.out.write_text(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
