"""Recovery and ensembles on a Dask cluster (ecorecover.dask) equal the in-process results.

One module-scoped LocalCluster (2 worker processes, 1 thread each, loopback) serves every test.
Recovery reads the recover fixture from zarr as a dask array (sparse and dense chunks) and is
compared with in-process recovery of the same data in memory, byte for byte; the 4-run
ensemble is compared with in-process ``train(..., n_runs=4)``.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _training_helpers import train_with_plan
from conftest import FIXTURES, read_matrix, read_table

import ecorecover
import ecorecover.recovery.api as rec_api
from ecorecover import preprocessing as pp
from ecorecover.recovery import RecoveryWarning, recover
from ecorecover.training import SkippedCellTypeWarning
from ecorecover.preprocessing import RawCountWarning

import dask.array as da  # the [test] extra brings dask[distributed]
import distributed

import ecorecover.dask as edask

TRAIN_TYPES = ["B", "CD4T", "CD8T", "DC", "Endothelial", "Fibroblast", "Macrophage", "NK", "Plasma"]
BLOCK = 512  # rows per block on the cluster: the fixture's 3834 cells make 8 blocks


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # start-up chatter (ports, deprecations) is not ours
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
        c = distributed.Client(cluster)
    yield c
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def data():
    counts = read_matrix("recover/input/counts.tsv.gz")  # genes x cells
    meta = read_table("recover/input/meta.tsv")
    obs = pd.DataFrame({"CellType": meta["CellType"].to_numpy()}, index=list(counts.columns))
    var = pd.DataFrame(index=list(counts.index))
    raw = sp.csr_matrix(counts.to_numpy().T)
    return raw, pp.log_normalize(raw), obs, var


@pytest.fixture(scope="module")
def models():
    return {ct: read_matrix(f"train/sample/{ct}.tsv.gz") for ct in TRAIN_TYPES}


@pytest.fixture(scope="module")
def stores(tmp_path_factory, data):
    """The log-normalised matrix as an AnnData zarr store (sparse X) and as a dense zarr array."""
    _, x, obs, var = data
    root = tmp_path_factory.mktemp("dask")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr v3 / anndata format chatter
        ad.AnnData(x, obs=obs, var=var).write_zarr(root / "sparse.zarr")
        da.from_array(x.toarray(), chunks=(700, 250)).to_zarr(str(root / "dense.zarr"))
    return root


def _lazy_sparse(stores, obs, var) -> ad.AnnData:
    import anndata.experimental as ade
    import zarr

    # anndata >= 0.12 (Python >= 3.11) calls it read_elem_lazy; 0.11, the newest for 3.10, read_elem_as_dask
    read_elem_lazy = getattr(ade, "read_elem_lazy", None) or ade.read_elem_as_dask
    x = read_elem_lazy(zarr.open_group(str(stores / "sparse.zarr"), mode="r")["X"], chunks=(500, -1))
    return ad.AnnData(x, obs=obs.copy(), var=var.copy())


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecoveryWarning)
        return fn(*args, progress=False, **kw)


def _same_bytes(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.index) == list(b.index) and list(a.columns) == list(b.columns)
    for col in a.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype.kind == "f":
            assert x.tobytes() == y.tobytes(), col
        else:
            assert (x == y).all(), col


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(rec_api, "block_size", lambda n_cols: BLOCK)


class _StatsSpy:
    """Records (engine class, mean, sd, number of blocks) when recover()'s statistics are done."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, np.ndarray, np.ndarray, int]] = []
        compute = rec_api.compute_statistics
        spy = self

        def record(engine, *args, **kwargs):
            stats = compute(engine, *args, **kwargs)
            spy.seen.append((type(engine).__name__, stats.mean.copy(), stats.sd.copy(), len(getattr(engine, "bounds", []))))
            return stats

        self.record = record


@pytest.fixture(scope="module")
def local_exact(data, models):
    """In-process exact recovery of the in-memory data, with its scaling statistics."""
    _, x, obs, var = data
    spy = _StatsSpy()
    mp = pytest.MonkeyPatch()
    mp.setattr(rec_api, "compute_statistics", spy.record)
    try:
        res = _quiet(recover, ad.AnnData(x, obs=obs.copy(), var=var.copy()), models)
    finally:
        mp.undo()
    return res, spy.seen[0]


def test_exact_recovery_of_a_dask_backed_dataset(client, data, models, stores, local_exact, small_blocks, monkeypatch):
    """Sparse chunks read from zarr on the workers: scores, labels and runs byte-identical."""
    _, x, obs, var = data
    local_exact, (n1, mean_l, sd_l, _) = local_exact
    spy = _StatsSpy()
    monkeypatch.setattr(rec_api, "compute_statistics", spy.record)
    lazy = _lazy_sparse(stores, obs, var)
    assert type(lazy.X).__module__.startswith("dask")
    got = _quiet(recover, lazy, models, client=client)
    _same_bytes(got, local_exact)
    assert lazy.obsm["SE_recovered_scores"].to_numpy().tobytes() == local_exact.iloc[:, 4:-1].to_numpy().tobytes()
    runs_d, runs_l = pd.DataFrame(got.attrs["ecorecover"]["runs"]), pd.DataFrame(local_exact.attrs["ecorecover"]["runs"])
    pd.testing.assert_frame_equal(runs_d, runs_l)  # same runs, same iteration counts
    # The per-gene means and sds (sequential sums in cell order) are bit-identical although
    # the dask sums were folded block by block over 8 blocks read in parallel ...
    ((n2, mean_d, sd_d, n_blocks),) = spy.seen
    assert (n1, n2) == ("ThreadEngine", "DaskEngine") and n_blocks == 8
    assert mean_d.tobytes() == mean_l.tobytes() and sd_d.tobytes() == sd_l.tobytes()
    # ... whereas adding per-block partial sums would not be (so the check above can fail).
    ref = read_table("recover/recoverse_train_models/assignments.tsv.gz").set_index("CID")
    assert (got["SE"] == ref["SE"]).all()
    xd = x.toarray()
    ct = obs["CellType"].to_numpy()
    differ = 0
    for c in TRAIN_TYPES:
        rows = np.flatnonzero(ct == c)
        seq = np.zeros(xd.shape[1])
        for r in rows:  # cell order
            seq += xd[r]
        partial = sum(xd[rows[(rows >= a) & (rows < a + BLOCK)]].sum(axis=0) for a in range(0, len(ct), BLOCK))
        differ += int((seq != partial).sum())
    assert differ > 0


def test_fast_recovery_dense_chunks_and_current_client(client, data, models, stores, small_blocks):
    """Dense chunks (row and column chunked) from zarr, fast mode, client taken from context."""
    _, x, obs, var = data
    local = _quiet(recover, ad.AnnData(x, obs=obs.copy(), var=var.copy()), models, mode="fast", copy=True)
    xd = da.from_zarr(str(stores / "dense.zarr"))
    assert xd.numblocks == (6, 2)
    got = _quiet(edask.recover, ad.AnnData(xd, obs=obs.copy(), var=var.copy()), models, mode="fast", copy=True)
    assert got.obsm["SE_recovered_scores"].to_numpy().tobytes() == local.obsm["SE_recovered_scores"].to_numpy().tobytes()
    assert (got.obs["SE_recovered"] == local.obs["SE_recovered"]).all()
    assert got.obs["SE_recovered_score"].to_numpy().tobytes() == local.obs["SE_recovered_score"].to_numpy().tobytes()
    assert (got.obs["SE_recovered_scored"] == local.obs["SE_recovered_scored"]).all()


def test_raw_counts_guard_and_in_memory_input(client, data, models, small_blocks):
    """Raw counts: the guard fires once on the cluster too (second statistics attempt), and an
    in-memory X with a client is cut into blocks sent to the workers."""
    raw, _, obs, var = data
    keep = np.flatnonzero(obs["CellType"].isin(["CD8T", "Macrophage", "B"]).to_numpy())
    a = ad.AnnData(raw[keep], obs=obs.iloc[keep].copy(), var=var.copy())
    with pytest.warns(RawCountWarning):
        local = _quiet(recover, a.copy(), models, mode="fast")
    with pytest.warns(RawCountWarning) as rec:
        got = _quiet(recover, a.copy(), models, client=client, mode="fast")
    assert sum(issubclass(w.category, RawCountWarning) for w in rec) == 1
    assert got.attrs["ecorecover"]["params"]["raw_count_guard_fired"]
    _same_bytes(got, local)


def test_errors_name_the_cell_and_gene(client, data, models, stores, small_blocks):
    _, x, obs, var = data
    bad = x.tolil()
    bad[1500, x.indices[x.indptr[1500]]] = np.nan  # a stored value of cell 1500, block 3
    a = ad.AnnData(sp.csr_matrix(bad), obs=obs.copy(), var=var.copy())
    with pytest.raises(ValueError) as local_err:
        _quiet(recover, a, models)
    lazy = ad.AnnData(da.from_array(a.X, chunks=(500, -1), asarray=False), obs=obs.copy(), var=var.copy())
    with pytest.raises(ValueError) as dask_err:
        _quiet(recover, lazy, models, client=client)
    assert "non-finite" in str(dask_err.value) and str(dask_err.value) == str(local_err.value)
    with pytest.raises(TypeError, match="dask.distributed.Client"):
        edask.get_client("tcp://127.0.0.1:1")


def test_backed_h5ad_needs_a_lazy_reader(client, data, models, tmp_path):
    _, x, obs, var = data
    path = tmp_path / "d.h5ad"
    ad.AnnData(x[:200], obs=obs.iloc[:200].copy(), var=var.copy()).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    try:
        with pytest.raises(TypeError, match="read_lazy"):
            _quiet(recover, backed, models, client=client)
    finally:
        backed.file.close()


def test_ensemble_on_the_cluster_equals_in_process(client):
    counts = pd.read_csv(FIXTURES / "train/input/counts.tsv.gz", sep="\t", index_col=0)
    meta = read_table("train/input/meta.tsv").set_index("cell")
    x = pp.log_normalize(sp.csr_matrix(counts.to_numpy(dtype=float).T))
    adata = ad.AnnData(X=x, obs=meta.loc[counts.columns].copy(), var=pd.DataFrame(index=counts.index))
    kw = {"progress": False, "sample_key": "Sample", "n_features_per_se": None, "seed": 1, "n_runs": 4}
    with pytest.warns(SkippedCellTypeWarning):
        local, _ = train_with_plan(adata, **kw)
    with pytest.warns(SkippedCellTypeWarning):
        got = ecorecover.train(adata, client=client, **{k: v for k, v in kw.items() if k != "client"})
    assert got.cell_types == local.cell_types and len(got.runs) == len(local.runs) == 4
    for ct in local.cell_types:
        assert list(got[ct].index) == list(local[ct].index) and list(got[ct].columns) == list(local[ct].columns)
        assert got[ct].to_numpy().tobytes() == local[ct].to_numpy().tobytes()
        for rg, rl in zip(got.runs, local.runs):
            assert rg[ct].to_numpy().tobytes() == rl[ct].to_numpy().tobytes()
    assert got.params == local.params
    assert [r.params["run_seed"] for r in got.runs] == [1, 2, 3, 4]

