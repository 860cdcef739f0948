"""Bad input across the public API (issue 9): every case must fail loudly or warn, naming the
offending key, gene, cell, model entry or file; inputs that are only unusual (other dtypes, memory
layouts, non-canonical sparse matrices, plain-gene models) must give exactly the canonical result.

Two tables:

- ``CASES``: ``(id, run, expect, match)``; ``run(ctx)`` builds the input and calls the API,
  ``expect`` is the exception (``pytest.raises``) or warning (``pytest.warns``) class, ``match`` a
  regex the message must match. ``ignore`` lists warnings a case may emit on its way to the error.
- ``EQUIVALENT``: ``(id, variant, canonical)``: an input and its canonical float64 / C-ordered /
  canonical-CSR form; train, recover(exact) and recover(fast) must give bit-identical results.

Everything runs on a 300-cell x 60-gene simulation (~15 ms per training, ~50 ms per recovery).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import ecorecover as er
from ecorecover import cli
from ecorecover.training import MissingLabelWarning
from ecorecover.preprocessing import RawCountWarning, log_normalize
from ecorecover.simulate import simulate

TRAIN_KW = dict(n_features=40, min_cells=10, progress=False)


# ---------------------------------------------------------------------------------------------
# Data


@pytest.fixture(scope="module")
def base() -> SimpleNamespace:
    raw = simulate(n_cells=300, n_samples=2, n_genes=60, cell_types=2, n_se=3, seed=1, n_signature_genes=10)
    raw.obs_names = [f"c{i:03d}" for i in range(raw.n_obs)]  # genes stay G0001 .. G0060
    norm = raw.copy()
    norm.X = log_normalize(raw.X)
    model = er.train(norm, **TRAIN_KW)
    assert model.cell_types == ["B", "CD4T"]
    return SimpleNamespace(raw=raw, adata=norm, model=model)


def _train(a: Any, **kw: Any) -> er.RecoveryModel:
    return er.train(a, **{**TRAIN_KW, **kw})


def _recover(a: Any, model: Any, **kw: Any) -> pd.DataFrame:
    # a copy: the shared fixtures are recovered many times, and a re-run warns that it replaces
    # the keys of the previous one (anndata's own duplicate-name warning on copy is not ours)
    if isinstance(a, ad.AnnData):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            a = a.copy()
    return er.recover(a, model, progress=False, **kw)


def _with(a: ad.AnnData, x: Any = None, **obs: Any) -> ad.AnnData:
    b = a.copy()
    if x is not None:
        b.X = x
    for k, v in obs.items():
        b.obs[k] = v
    return b


def _dense(ctx: SimpleNamespace) -> np.ndarray:
    return ctx.adata.X.toarray()


def _set(ctx: SimpleNamespace, i: int, gene: str, value: float, *, sparse: bool = False) -> ad.AnnData:
    x = _dense(ctx)
    x[i, list(ctx.adata.var_names).index(gene)] = value
    return _with(ctx.adata, sp.csr_matrix(x) if sparse else x)


def _model_gene(ctx: SimpleNamespace, ct: str = "B") -> str:
    return ctx.model[ct].index[0].rsplit("__", 1)[0]


def _bad_w(ctx: SimpleNamespace, value: float) -> dict[str, pd.DataFrame]:
    w = ctx.model["B"]
    w.iloc[1, 2] = value
    return {"B": w, "CD4T": ctx.model["CD4T"]}


def _plain(model: Any) -> dict[str, pd.DataFrame]:
    """The model's __pos rows under plain gene names (a model R trained without posneg)."""
    out = {}
    for ct in model:
        w = model[ct]
        w = w[[f.endswith("__pos") for f in w.index]]
        out[ct] = w.rename(index=lambda f: f[: -len("__pos")])
    return out


def _labels(ctx: SimpleNamespace, key: str, rows: slice, value: Any, dtype: Any = object) -> ad.AnnData:
    b = ctx.adata.copy()
    col = b.obs[key].astype(str).to_numpy().astype(dtype)
    col[rows] = value
    b.obs[key] = col
    return b


def _two_types(ctx: SimpleNamespace, key: str, a: Any, b: Any) -> ad.AnnData:
    """Column ``key`` with label ``a`` on the even cells 0..19, ``b`` on the odd ones: two labels
    of different types with the same text."""
    out = ctx.adata.copy()
    col = out.obs[key].astype(str).to_numpy().astype(object)
    col[0:20:2], col[1:20:2] = a, b
    out.obs[key] = col
    return out


def _numeric_se_with_na(ctx: SimpleNamespace) -> None:
    b = ctx.adata.copy()
    codes = {"nonSE": np.nan, "SE01": 1.0, "SE02": 2.0, "SE03": 3.0}
    b.obs["SE"] = b.obs["SE"].astype(str).map(codes).astype(float)
    m = _train(b)
    assert sorted(m.se_names) == ["1.0", "3.0", "nonSE"]


def _se_na_equals_nonse(ctx: SimpleNamespace) -> None:
    b = ctx.adata.copy()
    se = b.obs["SE"].astype(object).to_numpy()
    se[se == "nonSE"] = None
    b.obs["SE"] = se
    m = _train(b)
    assert m.cell_types == ctx.model.cell_types
    for c in m:
        assert m[c].equals(ctx.model[c])  # same features, SEs and bits as with explicit "nonSE"


def _all_zero_recover(ctx: SimpleNamespace) -> None:
    res = _recover(_with(ctx.adata, np.zeros(ctx.adata.shape)), ctx.model)
    assert (res["SE"] == "NonSE").all() and (res["PredScore"] == 0).all()


def _few_cells(ctx: SimpleNamespace) -> None:
    b = ctx.adata[ctx.adata.obs["CellType"] == "CD4T"].copy()
    keep = np.flatnonzero(ctx.adata.obs["CellType"] == "B")[:10]
    b = ad.concat([b, ctx.adata[keep]])
    res = _recover(b, ctx.model)
    assert (res.loc[res["CellType"] == "B", "PredScore"] == 0).all()


def _dup_gene_recover(ctx: SimpleNamespace) -> None:
    names = list(ctx.adata.var_names)
    g = _model_gene(ctx)
    names[names.index(g) + 1] = g
    _recover(_with_names(ctx, var=names), ctx.model)


def _dup(names: Any, i: int, j: int) -> list[str]:
    out = list(names)
    out[j] = out[i]
    return out


def _foreign_series(ctx: SimpleNamespace) -> None:
    # Same length, but indexed by ids that are not the cells: positional use would be silent.
    s = pd.Series(ctx.adata.obs["CellType"].astype(str).to_numpy(), index=[f"x{i}" for i in range(ctx.adata.n_obs)])
    _recover(ctx.adata, ctx.model, celltypes=s)


def _df_meta_misaligned(ctx: SimpleNamespace) -> None:
    df = pd.DataFrame(_dense(ctx).T, index=ctx.adata.var_names, columns=ctx.adata.obs_names)
    meta = ctx.adata.obs.copy()
    meta.index = ["zz" if c == "c005" else c for c in meta.index]
    _train(df, meta=meta)


def _ensemble_first_run_empty(ctx: SimpleNamespace) -> None:
    # 6 + 7 cells downsampled to 6: seed 1 draws <= 2 cells of one SE (no model), seed 2 does not.
    x = np.random.default_rng(0).lognormal(0, 0.6, (13, 8))
    obs = pd.DataFrame({"CellType": ["B"] * 13, "SE": ["SE01"] * 6 + ["SE02"] * 7}, index=[f"c{i}" for i in range(13)])
    a = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(8)]))
    er.train(a, n_runs=2, seed=1, min_cells=3, downsample=6, progress=False)


# -- files -----------------------------------------------------------------------------------


def _saved(ctx: SimpleNamespace, name: str = "m.h5") -> Path:
    p = ctx.tmp / name
    ctx.model.save(p)
    return p


def _truncated(ctx: SimpleNamespace) -> None:
    p = _saved(ctx)
    data = p.read_bytes()
    bad = ctx.tmp / "truncated.h5"
    bad.write_bytes(data[: len(data) // 2])
    er.load_model(bad)


def _corrupt(ctx: SimpleNamespace) -> None:
    p = _saved(ctx)
    data = bytearray(p.read_bytes())
    for i in range(2048, len(data), 97):
        data[i] ^= 0xFF
    bad = ctx.tmp / "corrupt.h5"
    bad.write_bytes(bytes(data))
    er.load_model(bad)


def _garbage(ctx: SimpleNamespace) -> None:
    bad = ctx.tmp / "garbage.h5"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    er.load_model(bad)


def _edited(ctx: SimpleNamespace, edit: Callable[[h5py.File], None]) -> None:
    p = _saved(ctx, "edited.h5")
    with h5py.File(p, "r+") as f:
        edit(f)
    er.load_model(p)


def _set_w0(f: h5py.File, value: float) -> None:
    f["weights/0/W"][1, 2] = value


def _external_w0(ctx: SimpleNamespace) -> None:
    """W0 stored in another file (issue 14: any readable file was loaded as weights)."""
    shape = ctx.model["B"].shape
    other = ctx.tmp / "other.bin"
    other.write_bytes(np.full(shape, 0.5).tobytes())

    def edit(f: h5py.File) -> None:
        del f["weights/0/W"]
        f.create_dataset("weights/0/W", shape=shape, dtype="<f8", external=[(str(other), 0, 8 * shape[0] * shape[1])])

    _edited(ctx, edit)


def _linked_w0(f: h5py.File, link: Any) -> None:
    del f["weights/0/W"]
    f["weights/0/W"] = link


def _declared_w0(f: h5py.File) -> None:
    """W0 declared 100 MB larger than what the file stores (issue 14: allocated as declared)."""
    del f["weights/0/W"]
    f.create_dataset("weights/0/W", shape=(12_500, 1_000), dtype="<f8")


def _cell_types(f: h5py.File, names: list[str]) -> None:
    del f["cell_types"]
    f.create_dataset("cell_types", data=np.array(names, dtype=object), dtype=h5py.string_dtype())


def _rds_bomb(ctx: SimpleNamespace) -> None:
    import gzip

    p = ctx.tmp / "bomb.rds"
    with gzip.open(p, "wb") as fh:  # 64 MB of zeros behind an XDR header, ~70 KB compressed
        fh.write(b"X\n" + np.array([3, 0, 0, 5], dtype=">i4").tobytes() + b"UTF-8")
        for _ in range(64):
            fh.write(bytes(1 << 20))
    er.read_r_models(p)


def _ragged_tsv(ctx: SimpleNamespace) -> None:
    p = ctx.tmp / "B.tsv"
    p.write_text("\tSE01\tSE02\nA__pos\t0.5\t0.25\nA__neg\t0.5\n")
    er.read_r_models(p)


def _save_twice(ctx: SimpleNamespace) -> None:
    _saved(ctx)
    _saved(ctx)


def _save_onto_symlink(ctx: SimpleNamespace) -> None:
    (ctx.tmp / "target.h5").write_bytes(b"keep")
    (ctx.tmp / "m.h5").symlink_to(ctx.tmp / "target.h5")
    ctx.model.save(ctx.tmp / "m.h5", overwrite=True)


def _cli_force_onto_fifo(ctx: SimpleNamespace) -> None:
    import os

    model = _saved(ctx, "run.h5")
    os.mkfifo(ctx.tmp / "ens.h5")
    _cli("aggregate", model, "--out", ctx.tmp / "ens.h5", "--force")


# -- CLI -------------------------------------------------------------------------------------


class CLIFailed(Exception):
    """A CLI call that returned a non-zero exit code; the message is 'exit N: <stderr>'."""


def _cli(*argv: Any) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv] + ["-q"])
    if code != 0:
        raise CLIFailed(f"exit {code}: {err.getvalue().strip()}")
    return err.getvalue()


def _tsv(ctx: SimpleNamespace, counts: np.ndarray, name: str = "counts.tsv") -> tuple[Path, Path]:
    """Genes x cells counts table and meta table, as the tutorial's files."""
    a = ctx.raw
    data = ctx.tmp / name
    pd.DataFrame(counts.T, index=a.var_names, columns=a.obs_names).to_csv(data, sep="\t", index_label="gene")
    meta = ctx.tmp / "meta.tsv"
    a.obs.to_csv(meta, sep="\t", index_label="cell")
    return data, meta


def _cli_negative_counts(ctx: SimpleNamespace) -> None:
    x = ctx.raw.X.toarray().astype(float)
    x[4, 6] = -3
    data, meta = _tsv(ctx, x)
    _cli("train", data, "--meta", meta, "--normalize", "--n-features", 40, "--out", ctx.tmp / "m.h5")


def _cli_inf_counts(ctx: SimpleNamespace) -> None:
    x = ctx.raw.X.toarray().astype(float)
    x[4, 6] = np.inf
    data, meta = _tsv(ctx, x)
    _cli("train", data, "--meta", meta, "--n-features", 40, "--out", ctx.tmp / "m.h5")


def _cli_nan_counts(ctx: SimpleNamespace) -> None:
    x = ctx.raw.X.toarray().astype(float)
    x[4, 6] = np.nan
    data, meta = _tsv(ctx, x)
    _cli("train", data, "--meta", meta, "--n-features", 40, "--out", ctx.tmp / "m.h5")


def _cli_meta_missing_cells(ctx: SimpleNamespace) -> None:
    data, meta = _tsv(ctx, ctx.raw.X.toarray())
    m = pd.read_csv(meta, sep="\t", index_col=0)
    m.drop(index="c007").to_csv(meta, sep="\t")
    _cli("train", data, "--meta", meta, "--normalize", "--out", ctx.tmp / "m.h5")


def _cli_recover(ctx: SimpleNamespace, *extra: Any) -> None:
    data, meta = _tsv(ctx, ctx.raw.X.toarray())
    _cli("recover", data, "--meta", meta, "--normalize", "--model", _saved(ctx), "--out", ctx.tmp / "r.tsv", *extra)


def _cli_train(ctx: SimpleNamespace, *extra: Any) -> None:
    data, meta = _tsv(ctx, ctx.raw.X.toarray())
    _cli("train", data, "--meta", meta, "--normalize", "--out", ctx.tmp / "m.h5", *extra)


# ---------------------------------------------------------------------------------------------
# The matrix


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[SimpleNamespace], Any]
    expect: type[BaseException] | type[Warning]
    match: str
    ignore: tuple[type[Warning], ...] = ()


TIE = er.TrainingInputError
REC = er.RecoveryWarning
MFE = er.ModelFileError

CASES = [
    # ---- train: values
    Case("train-nan-dense", lambda c: _train(_set(c, 7, "G0004", np.nan)), TIE, r"non-finite.*cell 'c007', gene 'G0004'"),
    Case("train-nan-sparse", lambda c: _train(_set(c, 7, "G0004", np.nan, sparse=True)), TIE,
         r"non-finite.*cell 'c007', gene 'G0004'"),
    Case("train-posinf", lambda c: _train(_set(c, 9, "G0010", np.inf)), TIE, r"cell 'c009', gene 'G0010'.*inf"),
    Case("train-neginf-sparse", lambda c: _train(_set(c, 9, "G0010", -np.inf, sparse=True)), TIE,
         r"cell 'c009', gene 'G0010'.*-inf"),
    Case("train-all-zero", lambda c: _train(_with(c.adata, np.zeros(c.adata.shape))), TIE,
         r"no cell type could be trained: B: no feature varies.*CD4T: no feature varies",
         ignore=(er.SkippedCellTypeWarning,)),
    Case("train-0-cells", lambda c: _train(c.adata[:0].copy()), TIE, r"empty \(0 cells x 60 genes\)"),
    Case("train-0-genes", lambda c: _train(c.adata[:, :0].copy()), TIE, r"empty \(300 cells x 0 genes\)"),
    Case("train-bool-X", lambda c: _train(_with(c.adata, _dense(c) > 0)), TypeError, r"adata\.X must hold numbers.*bool"),
    Case("train-object-X", lambda c: _train(_with(c.adata, _dense(c).astype(object))), TypeError,
         r"adata\.X must hold numbers.*object"),
    Case("train-string-dataframe",
         lambda c: _train(pd.DataFrame(_dense(c).T.astype(str), index=c.adata.var_names, columns=c.adata.obs_names),
                          meta=c.adata.obs),
         TypeError, r"expression DataFrame must hold numbers"),
    # ---- train: names and labels
    Case("train-dup-genes", lambda c: _train(_with_names(c, var=_dup(c.adata.var_names, 4, 5))), TIE,
         r"duplicated gene names \(adata\.var_names\): \['G0005'\]"),
    Case("train-dup-cells", lambda c: _train(_with_names(c, obs=_dup(c.adata.obs_names, 4, 5))), TIE,
         r"duplicated cell names \(adata\.obs_names\): \['c004'\]"),
    Case("train-meta-misaligned", _df_meta_misaligned, TIE, r"without a meta row \(e\.g\. \['c005'\]\).*\['zz'\]"),
    Case("train-missing-se-key", lambda c: _train(c.adata, se_key="Ecotype"), KeyError, r"se_key='Ecotype'"),
    Case("train-missing-celltype-key", lambda c: _train(c.adata, celltype_key="cell_type"), KeyError,
         r"celltype_key='cell_type'"),
    Case("train-missing-sample-key", lambda c: _train(c.adata, sample_key="Donor"), KeyError, r"sample_key='Donor'"),
    Case("train-celltype-NA", lambda c: _train(_labels(c, "CellType", slice(10, 13), None)), TIE,
         r"celltype_key='CellType' has 3 missing.*'c010'"),
    Case("train-se-NA-is-nonSE", _se_na_equals_nonse, MissingLabelWarning, r"se_key='SE' has \d+ missing.*'nonSE'"),
    Case("train-se-numeric-with-NA", _numeric_se_with_na, MissingLabelWarning, r"se_key='SE'.*first for cell 'c\d+'"),
    Case("train-one-se", lambda c: _train(_with(c.adata, SE="SE01")), TIE, r"B: 1 SE\(s\).*CD4T: 1 SE\(s\)"),
    Case("train-celltype-below-min-cells", lambda c: _train(_labels(c, "CellType", slice(0, 8), "Rare")),
         er.SkippedCellTypeWarning, r"Rare: 0 SE\(s\) with more than min_cells=10"),
    # ---- train: parameters
    Case("train-negative-n-features", lambda c: _train(c.adata, n_features=-5), ValueError, r"n_features must be >= 1, got -5"),
    Case("train-float-n-features", lambda c: _train(c.adata, n_features=40.0), TypeError, r"n_features must be an integer"),
    Case("train-negative-min-cells", lambda c: _train(c.adata, min_cells=-1), ValueError, r"min_cells must be >= 0"),
    Case("train-zero-runs", lambda c: _train(c.adata, n_runs=0), ValueError, r"n_runs must be >= 1"),
    Case("train-zero-downsample", lambda c: _train(c.adata, downsample=0), ValueError, r"downsample must be >= 1"),
    Case("train-zero-n-jobs", lambda c: _train(c.adata, n_jobs=0), ValueError, r"n_jobs must not be 0"),
    Case("train-ensemble-first-run-empty", _ensemble_first_run_empty, TIE,
         r"first run \(seed 1\) trained no cell type \(B: fewer than 2 SEs", ignore=(er.SkippedCellTypeWarning,)),
    Case("train-seed-out-of-range", lambda c: _train(c.adata, seed=2**31), ValueError, r"seed .* 32-bit"),
    Case("train-session-seed-float", lambda c: _train(c.adata, session_seed=1.5), TypeError, r"session_seed must be an integer"),
    Case("train-session-seed-out-of-range", lambda c: _train(c.adata, session_seed=-(2**31)), ValueError,
         r"session_seed .* 32-bit"),
    Case("train-se-int-and-str-labels", lambda c: _train(_two_types(c, "SE", 1, "1")), TIE,
         r"se_key='SE' mixes label types: .*\((int|str)\).* would both become the label '1'"),
    Case("train-celltype-bool-and-str-labels", lambda c: _train(_two_types(c, "CellType", True, "True")), TIE,
         r"celltype_key='CellType' mixes label types: True \(bool\) and 'True' \(str\)"),
    # ---- counts where counts are expected
    Case("log-normalize-negative-count", lambda c: log_normalize(np.where(np.arange(60) == 6, -3, c.raw.X.toarray())),
         ValueError, r"negative value.*cell \(row\) 0, gene \(column\) 6: -3\.0"),
    Case("log-normalize-negative-sparse", lambda c: log_normalize(sp.csc_matrix(-c.raw.X[:, 5:])), ValueError,
         r"negative value.*gene \(column\) 0"),
    # ---- aggregate
    Case("aggregate-nan-w", lambda c: er.aggregate([c.model, _bad_w(c, np.nan)]), ValueError,
         r"models\[1\]\['B'\].*feature '[^']+', SE 'nonSE': nan"),
    Case("aggregate-negative-w", lambda c: er.aggregate([_bad_w(c, -1.0), c.model]), ValueError,
         r"models\[0\]\['B'\].*SE 'nonSE': -1\.0"),
    Case("aggregate-empty", lambda c: er.aggregate([]), ValueError, r"models is empty"),
    Case("aggregate-fraction-above-1", lambda c: er.aggregate([c.model], min_model_fraction=1.5), ValueError,
         r"min_model_fraction must be in \[0, 1\), got 1\.5"),
    Case("aggregate-nan-delta", lambda c: er.aggregate([c.model], delta_threshold=float("nan")), er.errors.ParameterError,
         r"delta_threshold must be a finite number"),
    # ---- model objects and files
    Case("model-nan-w", lambda c: er.RecoveryModel(_bad_w(c, np.nan)), ValueError,
         r"weights\['B'\] holds 1 non-finite.*SE 'nonSE'"),
    Case("model-negative-w", lambda c: er.RecoveryModel(_bad_w(c, -0.5)), ValueError,
         r"weights\['B'\] holds 1 negative.*SE 'nonSE': -0\.5"),
    Case("load-missing-file", lambda c: er.load_model(c.tmp / "absent.h5"), FileNotFoundError, r"absent\.h5"),
    Case("load-truncated", _truncated, MFE, r"truncated\.h5 is damaged or truncated"),
    Case("load-corrupt", _corrupt, MFE, r"corrupt\.h5"),
    Case("load-not-hdf5", _garbage, MFE, r"garbage\.h5 is not an HDF5 file"),
    Case("load-newer-format", lambda c: _edited(c, lambda f: f.attrs.__setitem__("format_version", 2)), MFE,
         r"edited\.h5 has model format_version 2, newer than the 1"),
    Case("load-foreign-format", lambda c: _edited(c, lambda f: f.attrs.__setitem__("format", "pickle")), MFE,
         r"edited\.h5 is an HDF5 file but not an ecorecover model"),
    Case("load-nan-w", lambda c: _edited(c, lambda f: _set_w0(f, np.nan)), MFE, r"edited\.h5.*weights\['B'\].*non-finite"),
    Case("load-negative-w", lambda c: _edited(c, lambda f: _set_w0(f, -2.0)), MFE, r"edited\.h5.*weights\['B'\].*negative"),
    Case("save-missing-directory", lambda c: c.model.save(c.tmp / "nodir" / "m.h5"), FileNotFoundError,
         r"nodir/m\.h5: directory .*nodir does not exist"),
    Case("save-onto-directory", lambda c: c.model.save(c.tmp), IsADirectoryError, r"is a directory"),
    # ---- untrusted model files and saves (issue 14)
    Case("load-external-storage", _external_w0, MFE, r"edited\.h5: dataset /weights/0/W keeps its data in external"),
    Case("load-external-link", lambda c: _edited(c, lambda f: _linked_w0(f, h5py.ExternalLink("/etc/passwd", "/x"))),
         MFE, r"edited\.h5: /weights/0/W is an external link to '/etc/passwd'"),
    Case("load-soft-link", lambda c: _edited(c, lambda f: _linked_w0(f, h5py.SoftLink("/weights/1/W"))), MFE,
         r"edited\.h5: /weights/0/W is a soft link"),
    Case("load-declared-size", lambda c: _edited(c, _declared_w0), MFE,
         r"edited\.h5: dataset /weights/0/W declares shape \(12500, 1000\) \(100000000 bytes\) but stores 0"),
    Case("load-cell-types-short", lambda c: _edited(c, lambda f: _cell_types(f, ["B"])), MFE,
         r"edited\.h5: /cell_types holds 1 cell types, but n_cell_types is 2"),
    Case("load-cell-types-duplicated", lambda c: _edited(c, lambda f: (_cell_types(f, ["B", "B"]),
                                                                        f["weights/1"].attrs.__setitem__("cell_type", "B"))),
         MFE, r"edited\.h5: /cell_types names cell type\(s\) \['B'\] more than once"),
    Case("read-rds-decompression-bomb", _rds_bomb, MFE, r"bomb\.rds: the \d+-byte gzip stream decompresses to more"),
    Case("read-tsv-ragged", _ragged_tsv, MFE, r"B\.tsv: ragged table: line 3 has 2 fields, expected 3"),
    Case("model-empty-w", lambda c: er.RecoveryModel({"B": c.model["B"].iloc[:0]}), ValueError,
         r"weights\['B'\] is empty \(0 features x \d+ SEs\)"),
    Case("aggregate-empty-w", lambda c: er.aggregate([c.model], delta_threshold=1e9), ValueError,
         r"empty W for cell type\(s\) 'B' \(0 features x \d+ SEs\), 'CD4T'.*delta_threshold=1000000000"),
    Case("save-existing-file", _save_twice, FileExistsError, r"m\.h5: output file exists; pass overwrite=True"),
    Case("save-onto-symlink-overwrite", _save_onto_symlink, OSError,
         r"m\.h5: output path exists and is a symbolic link, not a regular file"),
    Case("cli-force-onto-fifo", _cli_force_onto_fifo, CLIFailed,
         r"^exit 2: .*ens\.h5: output path exists and is a fifo, not a regular file"),
    # ---- recover: values
    Case("recover-nan", lambda c: _recover(_set(c, 3, _model_gene(c), np.nan), c.model), ValueError,
         r"non-finite.*cell 'c003', gene 'G\d+'"),
    Case("recover-posinf-sparse", lambda c: _recover(_set(c, 5, _model_gene(c), np.inf, sparse=True), c.model),
         ValueError, r"cell 'c005', gene 'G\d+': (np\.float64\()?inf"),
    Case("recover-neginf", lambda c: _recover(_set(c, 6, _model_gene(c, "CD4T"), -np.inf), c.model), ValueError,
         r"cell 'c006', gene 'G\d+': (np\.float64\()?-inf"),
    Case("recover-all-zero", _all_zero_recover, REC, r"300 cells express fewer than 3 model genes.*CD4T \(\d+\), B \(\d+\)"),
    Case("recover-0-cells", lambda c: _recover(c.adata[:0].copy(), c.model), ValueError,
         r"no cell type of the model is present.*adata\.obs\['CellType'\]"),
    Case("recover-0-genes", lambda c: _recover(c.adata[:, :0].copy(), c.model), er.GeneMatchError,
         r"none of the \d+ model genes is found.*var_names"),
    Case("recover-bool-X", lambda c: _recover(_with(c.adata, _dense(c) > 0), c.model), TypeError, r"dtype bool"),
    Case("recover-object-X", lambda c: _recover(_with(c.adata, _dense(c).astype(object)), c.model), TypeError,
         r"dtype object"),
    # ---- recover: names and labels
    Case("recover-dup-genes", _dup_gene_recover, REC, r"1 duplicated gene names in the data \(e\.g\. \['G\d+'\]\)"),
    Case("recover-dup-cells", lambda c: _recover(_with_names(c, obs=_dup(c.adata.obs_names, 4, 5)), c.model),
         ValueError, r"cell ids must be unique.*'c004'"),
    Case("recover-missing-celltype-key", lambda c: _recover(c.adata, c.model, celltype_key="Type"), KeyError,
         r"celltype_key='Type'"),
    Case("recover-celltypes-length", lambda c: _recover(c.adata, c.model, celltypes=["B"] * 5), ValueError,
         r"celltypes has 5 labels but the data have 300 cells"),
    Case("recover-celltypes-foreign-index", _foreign_series, ValueError, r"'x0'"),
    Case("recover-celltype-below-20-cells", _few_cells, REC, r"fewer than 20 cells are not scored.*B \(10\)"),
    # ---- recover: models
    Case("recover-model-nan-w", lambda c: _recover(c.adata, _bad_w(c, np.nan)), ValueError,
         r"model\['B'\] holds 1 non-finite.*SE 'nonSE'"),
    Case("recover-model-negative-w", lambda c: _recover(c.adata, _bad_w(c, -1.0)), ValueError,
         r"model\['B'\] holds 1 negative value.*'nonSE'"),
    Case("recover-empty-model", lambda c: _recover(c.adata, {}), ValueError, r"model holds no cell types"),
    Case("recover-plain-model-scaled-exact", lambda c: _recover(c.adata, _plain(c.model)), ValueError,
         r"model\['(B|CD4T)'\] names plain genes.*negative"),
    Case("recover-plain-model-scaled-fast", lambda c: _recover(c.adata, _plain(c.model), mode="fast"), ValueError,
         r"model\['(B|CD4T)'\] names plain genes.*negative"),
    # ---- recover: parameters
    Case("recover-min-score-above-1", lambda c: _recover(c.adata, c.model, min_score=1.5), ValueError, r"min_score"),
    Case("recover-min-score-negative", lambda c: _recover(c.adata, c.model, min_score=-0.1), ValueError, r"min_score"),
    Case("recover-cells-per-run-0", lambda c: _recover(c.adata, c.model, cells_per_run=0), ValueError,
         r"cells_per_run must be >= 1, got 0 \(int\)"),
    Case("recover-cells-per-run-negative", lambda c: _recover(c.adata, c.model, cells_per_run=-3), ValueError,
         r"cells_per_run must be >= 1, got -3 \(int\)"),
    Case("recover-bad-mode", lambda c: _recover(c.adata, c.model, mode="approx"), ValueError, r"mode must be"),
    # ---- CLI (exit code 2 and a one-line message naming the file, option, cell or gene)
    Case("cli-normalize-negative-count", _cli_negative_counts, CLIFailed,
         r"^exit 2: .*counts\.tsv: --normalize needs raw counts.*cell 'c004', gene 'G0007': -3\.0$"),
    Case("cli-inf-in-table", _cli_inf_counts, CLIFailed, r"^exit 2: .*counts\.tsv.*cell 'c004', gene 'G0007'"),
    Case("cli-nan-in-table", _cli_nan_counts, CLIFailed, r"^exit 2: .*counts\.tsv.*gene 'G0007', cell 'c004'"),
    Case("cli-meta-missing-cell", _cli_meta_missing_cells, CLIFailed, r"^exit 2: .*meta\.tsv: 1 of 300 cells.*'c007'"),
    Case("cli-negative-n-features", lambda c: _cli_train(c, "--n-features", -5), CLIFailed,
         r"^exit 2: .*--n-features.*-5"),
    Case("cli-min-score-above-1", lambda c: _cli_recover(c, "--min-score", 2), CLIFailed, r"^exit 2: .*--min-score.*'2'"),
    Case("cli-model-newer-format",
         lambda c: (_edit_file(_saved(c, "v2.h5"), "format_version", 2), _cli("inspect", c.tmp / "v2.h5")),
         CLIFailed, r"^exit 2: .*v2\.h5 has model format_version 2"),
]


def _with_names(ctx: SimpleNamespace, *, var: Any = None, obs: Any = None) -> ad.AnnData:
    b = ctx.adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata: "names are not unique"
        if var is not None:
            b.var_names = var
        if obs is not None:
            b.obs_names = obs
    return b


def _edit_file(path: Path, attr: str, value: Any) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs[attr] = value


def test_matrix_is_large_and_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base: SimpleNamespace, tmp_path: Path) -> None:
    ctx = SimpleNamespace(raw=base.raw, adata=base.adata, model=base.model, tmp=tmp_path)
    with warnings.catch_warnings():
        for w in case.ignore:
            warnings.simplefilter("ignore", w)
        if issubclass(case.expect, Warning):
            with pytest.warns(case.expect, match=case.match):
                case.run(ctx)
        else:
            with pytest.raises(case.expect, match=case.match):
                case.run(ctx)
    # nothing half-written next to the inputs (atomic saves, CLI outputs)
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert [n for n in after if ".tmp" in n] == [], after
    if case.id.startswith("cli-"):
        assert "r.tsv" not in after and (case.id.startswith("cli-min-score") or "m.h5" not in after), after


def test_cli_train_maps_missing_se_to_nonse(base: SimpleNamespace, tmp_path: Path) -> None:
    """A meta table with empty SE cells trains like one with "nonSE" there, and says so."""
    ctx = SimpleNamespace(raw=base.raw, adata=base.adata, model=base.model, tmp=tmp_path)
    data, meta = _tsv(ctx, base.raw.X.toarray())
    m = pd.read_csv(meta, sep="\t", index_col=0)
    m.loc[m["SE"] == "nonSE", "SE"] = np.nan
    m.to_csv(meta, sep="\t", na_rep="")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["train", str(data), "--meta", str(meta), "--normalize", "--n-features", "40",
                         "--out", str(tmp_path / "na.h5")])
    assert code == 0, err.getvalue()
    assert "missing label" in err.getvalue() and "'nonSE'" in err.getvalue()
    data2, meta2 = _tsv(ctx, base.raw.X.toarray(), name="counts2.tsv")
    assert cli.main(["train", str(data2), "--meta", str(meta2), "--normalize", "--n-features", "40",
                     "--out", str(tmp_path / "ref.h5"), "-q"]) == 0
    a, b = er.load_model(tmp_path / "na.h5"), er.load_model(tmp_path / "ref.h5")
    assert a.cell_types == b.cell_types
    for ct in a:
        assert a[ct].equals(b[ct])


# ---------------------------------------------------------------------------------------------
# Unusual but valid input: the same answer as the canonical input


def _raw_as(dtype: Any) -> Callable[[SimpleNamespace], tuple[ad.AnnData, ad.AnnData]]:
    def make(ctx: SimpleNamespace) -> tuple[ad.AnnData, ad.AnnData]:
        x = ctx.raw.X.toarray()
        assert x.max() <= np.iinfo(np.uint8).max  # the cast is exact
        v = x.astype(dtype)
        return _with(ctx.raw, v), _with(ctx.raw, v.astype(np.float64))

    return make


def _norm_as(dtype: Any) -> Callable[[SimpleNamespace], tuple[ad.AnnData, ad.AnnData]]:
    def make(ctx: SimpleNamespace) -> tuple[ad.AnnData, ad.AnnData]:
        v = _dense(ctx).astype(dtype)
        return _with(ctx.adata, v), _with(ctx.adata, v.astype(np.float64))

    return make


def _fortran(ctx: SimpleNamespace) -> tuple[ad.AnnData, ad.AnnData]:
    x = _dense(ctx)
    f = np.asfortranarray(x)
    assert not f.flags.c_contiguous
    return _with(ctx.adata, f), _with(ctx.adata, x)


def _strided(ctx: SimpleNamespace) -> tuple[ad.AnnData, ad.AnnData]:
    x = _dense(ctx)
    wide = np.empty((x.shape[0], 2 * x.shape[1]))
    wide[:, ::2] = x
    wide[:, 1::2] = -7.0
    v = wide[:, ::2]
    assert not v.flags.c_contiguous and not v.flags.f_contiguous
    b = ad.AnnData(v, obs=ctx.adata.obs.copy(), var=ctx.adata.var.copy())
    return b, _with(ctx.adata, x)


def _unsorted_csr(ctx: SimpleNamespace) -> tuple[ad.AnnData, ad.AnnData]:
    c = sp.csr_matrix(ctx.adata.X)
    u = c.copy()
    for i in range(u.shape[0]):
        s, e = u.indptr[i], u.indptr[i + 1]
        u.indices[s:e] = u.indices[s:e][::-1].copy()
        u.data[s:e] = u.data[s:e][::-1].copy()
    u.has_sorted_indices = False
    assert not u.has_sorted_indices
    return _with(ctx.adata, u), _with(ctx.adata, c)


def _split_entries(c: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every stored value split into two entries at the same position (duplicates)."""
    coo = sp.coo_matrix(c)
    part = np.round(coo.data / 3, 3)
    return (np.concatenate([coo.row, coo.row]), np.concatenate([coo.col, coo.col]),
            np.concatenate([part, coo.data - part]))


def _duplicate_csr(ctx: SimpleNamespace) -> tuple[ad.AnnData, ad.AnnData]:
    c = sp.csr_matrix(ctx.raw.X, dtype=np.float64)  # raw integer counts: the split is exact
    rows, cols, vals = _split_entries(c)
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=c.shape[0]))])
    d = sp.csr_matrix((vals[order], cols[order], indptr), shape=c.shape)
    assert d.nnz == 2 * c.nnz and not d.has_canonical_format
    canon = d.copy()
    canon.sum_duplicates()
    return _with(ctx.raw, d), _with(ctx.raw, canon)


def _duplicate_csc(ctx: SimpleNamespace) -> tuple[ad.AnnData, ad.AnnData]:
    c = sp.csr_matrix(ctx.raw.X, dtype=np.float64)
    rows, cols, vals = _split_entries(c)
    d = sp.csc_matrix((vals, (rows, cols)), shape=c.shape)
    d = sp.csc_matrix((d.data, d.indices, d.indptr), shape=c.shape)  # keeps the layout
    canon = d.copy()
    canon.sum_duplicates()
    return _with(ctx.raw, d), _with(ctx.raw, sp.csr_matrix(canon))


def _csc(ctx: SimpleNamespace) -> tuple[ad.AnnData, ad.AnnData]:
    return _with(ctx.adata, sp.csc_matrix(ctx.adata.X)), _with(ctx.adata, sp.csr_matrix(ctx.adata.X))


def _explicit_zeros(ctx: SimpleNamespace) -> tuple[ad.AnnData, ad.AnnData]:
    """A CSR holding stored zeros (e.g. left by arithmetic) against the same matrix without them."""
    c = sp.csr_matrix(ctx.adata.X)
    rows = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
    extra_r, extra_c = np.arange(0, 300, 7), np.full(len(range(0, 300, 7)), 59)
    free = c[extra_r, extra_c].A1 == 0
    z = sp.csr_matrix((np.concatenate([c.data, np.zeros(free.sum())]),
                       (np.concatenate([rows, extra_r[free]]), np.concatenate([c.indices, extra_c[free]]))),
                      shape=c.shape)
    z = sp.csr_matrix((z.data, z.indices, z.indptr), shape=c.shape)
    assert z.nnz == c.nnz + free.sum() > c.nnz
    return _with(ctx.adata, z), _with(ctx.adata, c)


EQUIVALENT: list[tuple[str, Callable[[SimpleNamespace], tuple[ad.AnnData, ad.AnnData]]]] = [
    ("float16", _norm_as(np.float16)),
    ("float32", _norm_as(np.float32)),
    ("int64-counts", _raw_as(np.int64)),
    ("int32-counts", _raw_as(np.int32)),
    ("uint8-counts", _raw_as(np.uint8)),
    ("uint16-counts", _raw_as(np.uint16)),
    ("uint32-counts", _raw_as(np.uint32)),
    ("uint64-counts", _raw_as(np.uint64)),
    ("fortran-order", _fortran),
    ("non-contiguous", _strided),
    ("csr-unsorted-indices", _unsorted_csr),
    ("csr-duplicate-entries", _duplicate_csr),
    ("csc-duplicate-entries", _duplicate_csc),
    ("csc", _csc),
    ("csr-explicit-zeros", _explicit_zeros),
]


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RawCountWarning)
        return fn()


@pytest.mark.parametrize("api", ["train", "exact", "fast"])
@pytest.mark.parametrize("name,make", EQUIVALENT, ids=[n for n, _ in EQUIVALENT])
def test_equivalent_input(name: str, make: Callable, api: str, base: SimpleNamespace) -> None:
    ctx = SimpleNamespace(raw=base.raw, adata=base.adata, model=base.model)
    variant, canonical = make(ctx)
    if api == "train":
        got, want = _quiet(lambda: _train(variant)), _quiet(lambda: _train(canonical))
        assert got.cell_types == want.cell_types
        for ct in want:
            assert list(got[ct].index) == list(want[ct].index)
            assert list(got[ct].columns) == list(want[ct].columns)
            assert got[ct].to_numpy().tobytes() == want[ct].to_numpy().tobytes(), ct
        return
    got = _quiet(lambda: _recover(variant, base.model, mode=api))
    want = _quiet(lambda: _recover(canonical, base.model, mode=api))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert (want["PredScore"] > 0).mean() > 0.9  # the comparison is not between empty results


# ---------------------------------------------------------------------------------------------
# Models R accepts that look unusual


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_plain_gene_model_equals_posneg_model_without_scaling(base: SimpleNamespace, mode: str) -> None:
    """R trains a model without posneg (plain gene names) when nothing is negative; such a model
    is applied without posneg. On non-negative data it must give the same as the same weights
    named GENE__pos (R's posneg then drops the all-zero __neg features)."""
    plain = _plain(base.model)
    pos = {ct: w.rename(index=lambda g: g + "__pos") for ct, w in plain.items()}
    got = _recover(base.adata, plain, scale=False, mode=mode)
    want = _recover(base.adata, pos, scale=False, mode=mode)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    scores = got[base.model.se_names].to_numpy()
    scored = got["PredScore"] > 0
    assert scored.mean() > 0.9
    assert np.abs(scores[scored].sum(axis=1) - 1).max() <= 1e-12


def test_plain_gene_model_trained_without_posneg(base: SimpleNamespace) -> None:
    """train(scale=False) on non-negative data gives plain gene names (R skips posneg); recovery
    with that model works in both modes."""
    m = _train(base.adata, scale=False)
    assert not any("__" in f for ct in m for f in m[ct].index)
    for mode in ("exact", "fast"):
        res = _recover(base.adata, m, scale=False, mode=mode)
        scored = res["PredScore"] > 0
        assert scored.mean() > 0.9, mode
        s = res.loc[scored, sorted(m.se_names)].to_numpy().sum(axis=1)
        assert np.abs(s - 1).max() <= 1e-12, mode


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_ses_absent_from_some_cell_types(base: SimpleNamespace, mode: str) -> None:
    """Each cell type's model covers different SEs: scores of an SE a type lacks are exactly 0,
    each scored cell's scores sum to 1, and a type's scores equal those of its model alone."""
    m = {"B": base.model["B"][["SE01", "SE03"]], "CD4T": base.model["CD4T"][["SE03", "nonSE"]]}
    res = _recover(base.adata, m, mode=mode)
    assert list(res.columns[4:-1]) == ["nonSE", "SE01", "SE03"]  # then "scored"
    b = res["CellType"] == "B"
    assert (res.loc[b, "nonSE"] == 0).all() and (res.loc[~b, "SE01"] == 0).all()
    assert set(res.loc[b, "InitSE"]) <= {"SE01", "SE03"} and set(res.loc[~b, "InitSE"]) <= {"SE03", "nonSE"}
    scored = res["PredScore"] > 0
    assert scored.mean() > 0.9
    s = res.loc[scored, ["nonSE", "SE01", "SE03"]].to_numpy().sum(axis=1)
    assert np.abs(s - 1).max() <= 1e-12


# ---------------------------------------------------------------------------------------------
# n_jobs: an absurd thread count is refused at once by every public function that takes it


def _n_jobs_calls(ctx: SimpleNamespace, n_jobs: Any) -> dict[str, Callable[[], Any]]:
    """Every public function with an ``n_jobs`` argument, called on valid small input."""
    from ecorecover import dask as edask
    from ecorecover import nmf

    x = ctx.adata.X.toarray()
    w = ctx.model["B"]
    bulk = pd.DataFrame(x[:20].T, index=ctx.adata.var_names, columns=[f"s{i}" for i in range(20)])
    v, w0, h = np.ones((6, 5)), np.ones((6, 2)), np.ones((2, 5))
    cells_b = ctx.adata[ctx.adata.obs.CellType == "B"]
    return {
        "train": lambda: _train(ctx.adata, n_jobs=n_jobs),
        "recover": lambda: _recover(ctx.adata.copy(), ctx.model, n_jobs=n_jobs),
        "nmf_predict": lambda: er.nmf_predict(w, cells_b, n_jobs=n_jobs),
        "deconvolve": lambda: er.deconvolve(bulk, w, n_jobs=n_jobs),
        "loocv": lambda: er.loocv(ctx.adata.copy(), n_jobs=n_jobs, progress=False),
        "log_normalize": lambda: log_normalize(ctx.raw.X, n_jobs=n_jobs),
        "scale": lambda: er.preprocessing.scale(x, n_jobs=n_jobs),
        "update_h": lambda: nmf.update_h(v, w0, h, n_jobs=n_jobs),
        "update_w": lambda: nmf.update_w(v, w0, h, n_jobs=n_jobs),
        "solve_h_fast": lambda: nmf.solve_h_fast(sp.csr_matrix(v.T), w0, w0, n_jobs=n_jobs),
        "dask.train": lambda: edask.train(ctx.adata, n_jobs=n_jobs, **TRAIN_KW),
        "dask.recover": lambda: edask.recover(ctx.adata.copy(), ctx.model, n_jobs=n_jobs, progress=False),
    }


N_JOBS_API = ["train", "recover", "nmf_predict", "deconvolve", "loocv", "log_normalize", "scale", "update_h",
              "update_w", "solve_h_fast", "dask.train", "dask.recover"]


def test_every_n_jobs_function_is_covered() -> None:
    """N_JOBS_API is complete: it lists every public function with an n_jobs argument (the Dask
    wrappers take it through **kwargs)."""
    import inspect

    found = {"dask.train", "dask.recover"}
    public = [(er, n) for n in er.__all__]
    public += [(m, n) for m in (er.nmf, er.preprocessing) for n in dir(m) if getattr(getattr(m, n), "__module__", "") == m.__name__]
    for mod, name in public:
        obj = getattr(mod, name)
        if inspect.isfunction(obj) and not name.startswith("_") and "n_jobs" in inspect.signature(obj).parameters:
            found.add(name)
    assert found == set(N_JOBS_API)


@pytest.mark.parametrize("n_jobs", [10**6, 2**63])
@pytest.mark.parametrize("api", N_JOBS_API)
def test_absurd_n_jobs_is_refused_at_once(base: SimpleNamespace, api: str, n_jobs: int) -> None:
    """Issue 14.6: n_jobs=10**6 used to start that many OS threads; now a ValueError, in < 1 s."""
    import time

    call = _n_jobs_calls(base, n_jobs)[api]
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"n_jobs={n_jobs} is more threads than this machine can use: at most \d+"):
        call()
    assert time.perf_counter() - start < 1.0
