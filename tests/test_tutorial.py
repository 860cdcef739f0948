"""docs/tutorial.md runs end to end (through docs/make_tutorial.py) and shows what it says.

About 20 s on 2 cores. To refresh the figures and printed outputs in docs/:
``python docs/make_tutorial.py`` (``--check`` fails if the printed outputs changed).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import matplotlib  # noqa: F401  (the [test] extra brings it)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _runner():
    spec = importlib.util.spec_from_file_location("make_tutorial", DOCS / "make_tutorial.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    mod = _runner()
    out = tmp_path_factory.mktemp("figures")
    ns, blocks, caught = mod.run(mod.TUTORIAL, out, verbose=False)
    return mod, ns, blocks, caught, out


def test_tutorial_runs_and_writes_its_figures(tutorial):
    mod, ns, blocks, caught, out = tutorial
    markdown = mod.TUTORIAL.read_text()
    linked = [Path(f).name for b in blocks for f in b.figures]
    assert linked, "the tutorial shows no figure"
    assert sorted(p.name for p in out.iterdir()) == sorted(linked)
    for name in linked:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        # The committed figures exist too (the page links them).
        assert (DOCS / "figures" / name).is_file(), f"docs/figures/{name} missing: run python docs/make_tutorial.py"
    assert "](figures/" in markdown
    # The tutorial runs clean: no ecorecover warning (raw counts, unscored cells...).
    ours = [w for w in caught if type(w.message).__module__.startswith("ecorecover")]
    assert not ours, [str(w.message) for w in ours]


def test_tutorial_results_make_sense(tutorial):
    _, ns, blocks, _, _ = tutorial
    import ecorecover as er

    ensemble, query = ns["ensemble"], ns["query"]
    assert isinstance(ensemble, er.RecoveryModel) and len(ensemble.runs) == 50
    # Recovery on the held-out sample is far better than chance (5 labels), fast ~ exact.
    assert ns["accuracy"] > 0.6
    assert (ns["fast"]["SE"] == ns["result"]["SE"]).mean() > 0.98
    assert list(query.obs["SE_pred"].astype(str)) == list(ns["result"]["SE"])
    # Cross-validation: every reference cell voted on once per repeat; F1 diagonal sensible.
    cv = ns["cv"]
    assert (cv["cvPred_votes"] == 3).all() and (cv["cvPred"] == cv["SE"]).mean() > 0.5
    f1 = ns["f1"]
    assert np.nanmean(np.diag(f1)) > 0.5
    # Deconvolution tracks the true fractions of the query pseudo-bulks.
    est, truth = ns["estimated"], ns["query_fractions"]
    np.testing.assert_allclose(est.sum(axis=1), 1.0, atol=1e-12)
    assert np.median(ns["r"]) > 0.7
    assert list(est.index) == list(truth.index)
    # Every block that has an output block printed something.
    assert all(b.output.strip() for b in blocks if b.output_span is not None)


def test_tutorial_spatial_validation_finds_the_planted_patches(tutorial, tmp_path, monkeypatch):
    """Section 9: the recovered SEs sit in the patches their true SEs were placed in, and the
    page's `ecorecover validate` command, run as written, gives the tables the page shows."""
    mod, ns, _, _, _ = tutorial
    coloc, moran, markers = ns["coloc"], ns["moran"], ns["markers"]
    planted = ["SE01", "SE02", "SE03", "SE04"]
    assert coloc.n_perm == 200 and coloc.seed == 1 and not coloc.empty_states
    assert (coloc.pvalues[planted] < 0.01).all() and (coloc.se_zscores[planted] > 0).all()
    assert coloc.se_zscores["nonSE"] < 0  # placed uniformly: no within-SE colocalization
    assert (moran.loc[planted, "zscore"] > 5).all() and moran.loc["nonSE", "zscore"] < 3
    # Each SE's model genes are expressed most in the cells recovered as that SE.
    assert all(markers.loc[s].idxmax() == s for s in markers.index), markers
    # A bulk model trained on the recovered SEs' pseudo-bulks deconvolves other samples' mixtures.
    fractions = ns["fractions"]
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, atol=1e-12)
    assert np.median(list(ns["r_spatial"].values())) > 0.6

    markdown = mod.TUTORIAL.read_text()
    section = markdown[markdown.index("## 9. Spatial validation"):]
    command = re.search(r"```bash\n(ecorecover validate [^\n]*)\n```", section).group(1)
    monkeypatch.chdir(tmp_path)
    ns["query"].write_h5ad("spatial.h5ad")  # as the page's block before the command does
    from ecorecover import cli

    assert cli.main([*shlex.split(command)[1:], "-q"]) == 0
    out = tmp_path / "validation"

    def read(name):
        return pd.read_csv(out / name, sep="\t", index_col=0, float_precision="round_trip")

    test = read("colocalization_se_test.tsv")
    np.testing.assert_array_equal(test.loc[coloc.pvalues.index, "Pval"], coloc.pvalues)
    np.testing.assert_array_equal(test.loc[coloc.pvalues.index, "Zscore"], coloc.se_zscores)
    np.testing.assert_array_equal(read("colocalization_zscores.tsv").to_numpy(), coloc.zscores.to_numpy())
    np.testing.assert_array_equal(read("moran.tsv").loc[moran.index].to_numpy(), moran.to_numpy())
    assert {"colocalization.png", "spatial.png", "report.json"} <= {p.name for p in out.iterdir()}
