"""train(session_seed=) against R's NMFGenerateWList when R seeds nothing inside
(tests/fixtures/train_session_seed): each cell type's initial W continues R's session stream."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ecorecover.training import train
from ecorecover.training.layout import layout
from ecorecover.training.sampling import DrawOptions
from ecorecover.training.streams import session_streams
from ecorecover.preprocessing import log_normalize
from ecorecover.rng import RRandom

from _training_helpers import train_with_plan
from conftest import FIXTURES, max_abs_diff, read_matrix, read_table

CELL_TYPES = ["B", "CD4T", "CD8T", "DC", "Endothelial", "Fibroblast", "Macrophage", "NK", "Plasma"]
#: R's calls (fixtures README): ``set.seed(1); NMFGenerateWList(...)`` and ``downsample = 150``.
CALLS = {"nosample": dict(session_seed=1), "nosample_downsample150": dict(session_seed=1, downsample=150)}
DRAW_KW = dict(balance=True, min_cells=20, with_samples=False)


@pytest.fixture(scope="module")
def adata() -> ad.AnnData:
    counts = pd.read_csv(FIXTURES / "train_session_seed/input/counts.tsv.gz", sep="\t", index_col=0)
    meta = read_table("train_session_seed/input/meta.tsv.gz").set_index("cell")
    x = log_normalize(sp.csr_matrix(counts.to_numpy(dtype=float).T))  # R's NormalizeData
    return ad.AnnData(X=x, obs=meta.loc[counts.columns].copy(), var=pd.DataFrame(index=counts.index))


def run(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Epithelial/Malignant (only nonSE) get no model
        return train_with_plan(data, **kw)


@pytest.mark.parametrize("call", list(CALLS))
def test_session_seed_matches_r(adata, call):
    model, _ = run(adata, **CALLS[call])
    assert model.cell_types == CELL_TYPES
    summary = read_table("train_session_seed/summary.tsv").query("variant == @call").set_index("CellType")
    worst = 0.0
    for ct in CELL_TYPES:
        exp, got = read_matrix(f"train_session_seed/{call}/{ct}.tsv.gz"), model[ct]
        assert got.shape[0] == summary.loc[ct, "W_rows"], (call, ct)
        assert list(got.index) == list(exp.index), (call, ct)
        assert list(got.columns) == list(exp.columns), (call, ct)
        worst = max(worst, max_abs_diff(got, exp))
    assert worst <= 1e-9  # measured: <= 1.6e-14
    assert model.params["session_seed"] == 1


def test_exact_tie_decided_by_r_session_stream(adata):
    """ITGA4__neg has the same mean in SE04 and SE10 of Plasma: only R's W0 keeps ITGA4."""
    model = run(adata, session_seed=1)[0]["Plasma"]
    assert model.shape == (594, 12)
    assert {"ITGA4__pos", "ITGA4__neg"} <= set(model.index)
    assert model.loc["ITGA4__neg", "SE04"] == 0.5281937604841894  # 1 ulp above SE10, as in R
    assert model.loc["ITGA4__neg", "SE10"] == 0.5281937604841893
    # default (session_seed=None): W0 from set.seed(2024)'s stream, as documented; the tie goes the other way
    default = run(adata)[0]["Plasma"]
    assert "ITGA4__neg" not in default.index and default.shape == (592, 12)


def test_plasma_w0_is_r_initial_w(adata):
    """The stream reaches Plasma after runif(m * k) of B..NK: its W0 is R's, bit for bit."""
    _, plan = run(adata, session_seed=1)
    draw = DrawOptions(downsample=2500, **DRAW_KW)
    streams = session_streams(plan.fits.prepared, seed=2024, session_seed=1, draw_options=draw)
    lay = layout(plan.fits.prepared["Plasma"], seed=2024, draw_options=draw)
    m, k = lay.features.gene.size, len(lay.ses)
    w0 = streams["Plasma"].generator().runif(m * k).reshape(k, m).T
    exp = read_matrix("train_session_seed/plasma_internals/W0.tsv.gz")
    assert exp.shape == (m, k) and list(exp.columns) == lay.ses
    assert np.array_equal(w0, exp.to_numpy())
    assert streams["B"].skip == 0 and streams["Plasma"].skip == 600 * (9 + 12 * 6 + 7)  # summary.tsv: V rows x SEs


def test_a_set_seed_inside_restarts_the_session_stream(adata):
    """downsample=300: B, CD4T, CD8T are downsampled (set.seed(2024) + sample.int), DC is not, so
    DC's W0 follows CD8T's draws and CD8T's own W0 on that seeded stream."""
    _, plan = run(adata, session_seed=1, downsample=300)
    draw = DrawOptions(downsample=300, **DRAW_KW)
    streams = session_streams(plan.fits.prepared, seed=2024, session_seed=1, draw_options=draw)
    cd8 = layout(plan.fits.prepared["CD8T"], seed=2024, draw_options=draw)
    dc = layout(plan.fits.prepared["DC"], seed=2024, draw_options=draw)
    assert cd8.rng is not None and dc.rng is None and len(plan.fits.prepared["CD8T"].cells) == 733
    r = RRandom(2024)
    r.sample_int(733, 300)
    r.runif(cd8.w0_size)
    expected = r.runif(dc.w0_size)
    assert np.array_equal(streams["DC"].generator().runif(expected.size), expected)


def test_session_seed_runs_and_arguments(adata):
    sub = adata[adata.obs.CellType.isin(["NK", "Plasma", "DC"])].copy()
    ens, _ = run(sub, session_seed=1, n_runs=2)
    for r, rm in enumerate(ens.runs):  # run r: seed + r, session_seed + r
        single, _ = run(sub, seed=2024 + r, session_seed=1 + r)
        assert rm.params["session_seed"] == 1 and rm.params["run_seed"] == 2024 + r
        for ct in single.cell_types:
            assert rm[ct].equals(single[ct])
    with pytest.raises(TypeError, match="session_seed must be an integer"):
        train(sub, session_seed=1.5, progress=False)
    with pytest.raises(ValueError, match="session_seed"):
        train(sub, session_seed=2**31 - 1, n_runs=2, progress=False)


def test_session_seed_on_a_dask_cluster(adata):
    import distributed
    sub = adata[adata.obs.CellType.isin(["NK", "Plasma"])].copy()
    local, _ = run(sub, session_seed=1, n_runs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            got = train(sub, session_seed=1, n_runs=2, client=client, progress=False)
    for rg, rl in zip(got.runs, local.runs):
        for ct in rl.cell_types:
            assert rg[ct].equals(rl[ct])
