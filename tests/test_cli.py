"""The ``ecorecover`` command line: an array-style end-to-end run equal to the in-process API,
bad input (exit code 2, one line, nothing written), inspect and demo."""

from __future__ import annotations

import gzip
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import ecorecover
from ecorecover.cli import main
from ecorecover.simulate import simulate_split

RUN_ENV = "SLURM_ARRAY_TASK_ID"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Tiny simulated raw counts as the tutorial's files: genes x cells .tsv.gz + meta .tsv."""
    d = tmp_path_factory.mktemp("cli_data")
    train, test = simulate_split(n_cells=900, n_held_out=400, n_genes=100, cell_types=3, n_se=3, seed=21)
    out = {}
    for name, a in (("train", train), ("test", test)):
        counts = pd.DataFrame(a.X.toarray().T, index=a.var_names, columns=a.obs_names)
        out[f"{name}_counts"] = d / f"{name}_counts.tsv.gz"
        counts.to_csv(out[f"{name}_counts"], sep="\t", index_label="gene")
        out[f"{name}_meta"] = d / f"{name}_meta.tsv"
        a.obs.to_csv(out[f"{name}_meta"], sep="\t", index_label="cell")
    return out


def _in_process_input(counts: Path, meta: Path):
    from ecorecover.preprocessing import log_normalize
    from ecorecover.readers import read_expression

    a = read_expression(counts, meta=meta)
    a.X = log_normalize(a.X)
    return a


def _start(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != RUN_ENV}
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "ecorecover.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> tuple[int, str]:
    return _finish(_start(*args, env_extra=env_extra))


def _same_weights(a, b) -> None:
    assert a.cell_types == b.cell_types
    for ct in a.cell_types:
        wa, wb = a[ct], b[ct]
        assert list(wa.index) == list(wb.index), ct
        assert list(wa.columns) == list(wb.columns), ct
        assert np.array_equal(wa.to_numpy(), wb.to_numpy()), ct  # bit-exact


def test_array_runs_aggregate_and_recover_equal_the_api(files, tmp_path):
    from ecorecover.recovery import recover
    from ecorecover.training import train
    from ecorecover.model import load_model

    common = [str(files["train_counts"]), "--meta", str(files["train_meta"]), "--sample-key", "Sample",
              "--n-features-per-se", "none", "--seed", "7", "--runs", "3", "--normalize", "-q"]
    models = tmp_path / "models"
    models.mkdir()
    # three concurrent processes, as array tasks; run 1 takes its index from the Slurm variable
    procs = [
        _start("train", *common, "--run-index", "0", "--out", str(models / "run_0.h5")),
        _start("train", *common, "--out", str(models / "run_1.h5"), env_extra={RUN_ENV: "1"}),
        _start("train", *common, "--run-index", "2", "--out", str(models / "run_2.h5")),
    ]
    for proc in procs:
        code, err = _finish(proc)
        assert code == 0, err
    runs = [load_model(models / f"run_{i}.h5") for i in range(3)]
    assert [r.params["seed"] for r in runs] == [7, 8, 9]
    assert [r.params["run_index"] for r in runs] == [0, 1, 2]
    assert runs[1].params["run_index_from"] == f"${RUN_ENV}"

    # file order on the command line does not matter: runs are put in run-index order
    ens_path = tmp_path / "ensemble.h5"
    code, err = _cli("aggregate", str(models / "run_2.h5"), str(models / "run_0.h5"), str(models / "run_1.h5"),
                     "--out", str(ens_path), "-q")
    assert code == 0, err
    ens = load_model(ens_path)
    # the order matters (sums in list order): in command-line order the W would differ in the last bits
    from ecorecover._aggregate import aggregate

    unsorted = aggregate([runs[2], runs[0], runs[1]])
    assert any(not np.array_equal(unsorted[ct].loc[ens[ct].index, ens[ct].columns].to_numpy(), ens[ct].to_numpy())
               for ct in ens.cell_types)

    adata = _in_process_input(files["train_counts"], files["train_meta"])
    expected = train(adata, sample_key="Sample", n_features_per_se=None, seed=7, n_runs=3, progress=False)
    _same_weights(ens, expected)
    assert len(ens.runs) == 3
    for got, exp in zip(ens.runs, expected.runs):
        _same_weights(got, exp)
    assert ens.params["seed"] == 7 and ens.params["n_runs"] == 3 and ens.params["seeds"] == [7, 8, 9]

    table = tmp_path / "recovered.tsv"
    h5ad = tmp_path / "recovered.h5ad"
    code, err = _cli("recover", str(files["test_counts"]), "--meta", str(files["test_meta"]), "--model", str(ens_path),
                     "--normalize", "--out", str(table), "--write-h5ad", str(h5ad), "--key-added", "SE_cli", "-q")
    assert code == 0, err
    test = _in_process_input(files["test_counts"], files["test_meta"])
    exp_table = recover(test, expected, progress=False)
    got = pd.read_csv(table, sep="\t", index_col=0, float_precision="round_trip")
    assert list(got.columns) == list(exp_table.columns)
    assert list(got.index) == list(exp_table.index)
    pd.testing.assert_frame_equal(got, exp_table, check_exact=True, check_names=False)
    import anndata as ad

    back = ad.read_h5ad(h5ad)
    assert list(back.obs["SE_cli"].astype(str)) == list(exp_table["SE"])
    # the metadata's own SE column (the true labels) is kept
    truth = pd.read_csv(files["test_meta"], sep="\t", index_col=0)["SE"]
    assert list(back.obs["SE"].astype(str)) == list(truth.loc[back.obs_names].astype(str))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble.h5", "models", "recovered.h5ad", "recovered.tsv"]


# -- in-process runs for the error paths (fast) ---------------------------------------------------
def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.match(r"^ecorecover \w+: error: ", lines[0]), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


@pytest.fixture(scope="module")
def model_file(files, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli_model")
    p = d / "model.h5"
    assert main(["train", str(files["train_counts"]), "--meta", str(files["train_meta"]), "--out", str(p),
                 "--normalize", "-q"]) == 0
    return p


def test_missing_data_file(capsys, tmp_path, files):
    code, _, err = _run(capsys, "train", str(tmp_path / "absent.tsv"), "--meta", str(files["train_meta"]),
                        "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 2
    _one_error_line(err, "absent.tsv", "no such file")
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("content", [b"gene\tc1\tc2\nG1\t1\tx\n", b"\x1f\x8b\x08\x00 not really gzip" * 20])
def test_garbled_matrix(capsys, tmp_path, files, content):
    bad = tmp_path / "bad.tsv.gz"
    bad.write_bytes(content if content.startswith(b"\x1f") else gzip.compress(content))
    code, _, err = _run(capsys, "train", str(bad), "--meta", str(files["train_meta"]), "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 2
    _one_error_line(err, "bad.tsv.gz")
    assert _listing(tmp_path) == ["bad.tsv.gz"]


def test_meta_with_no_matching_cells(capsys, tmp_path, files):
    meta = tmp_path / "meta.tsv"
    m = pd.read_csv(files["train_meta"], sep="\t", index_col=0)
    m.index = [f"other_{i}" for i in range(len(m))]
    m.to_csv(meta, sep="\t")
    code, _, err = _run(capsys, "train", str(files["train_counts"]), "--meta", str(meta), "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 2
    _one_error_line(err, "meta.tsv", "no cell id matches")
    assert _listing(tmp_path) == ["meta.tsv"]


def test_unknown_key(capsys, tmp_path, files, model_file):
    code, _, err = _run(capsys, "train", str(files["train_counts"]), "--meta", str(files["train_meta"]),
                        "--celltype-key", "cell_type", "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 2
    _one_error_line(err, "train_meta.tsv", "'cell_type'", "--celltype-key")
    code, _, err = _run(capsys, "recover", str(files["test_counts"]), "--meta", str(files["test_meta"]),
                        "--model", str(model_file), "--celltype-key", "Type", "--out", str(tmp_path / "r.tsv"), "-q")
    assert code == 2
    _one_error_line(err, "test_meta.tsv", "'Type'")
    assert _listing(tmp_path) == []


def test_model_file_that_is_not_a_model(capsys, tmp_path, files, model_file):
    truncated = tmp_path / "truncated.h5"
    data = model_file.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(4)
    text = tmp_path / "text.h5"
    text.write_text("not a model\n")
    for bad in (truncated, other, text):
        out = tmp_path / "r.tsv"
        code, _, err = _run(capsys, "recover", str(files["test_counts"]), "--meta", str(files["test_meta"]),
                            "--model", str(bad), "--out", str(out), "-q")
        assert code == 2, bad
        _one_error_line(err, bad.name)
        code, _, err = _run(capsys, "inspect", str(bad))
        assert code == 2
        _one_error_line(err, bad.name)
        code, _, err = _run(capsys, "aggregate", str(model_file), str(bad), "--out", str(tmp_path / "e.h5"), "-q")
        assert code == 2
        _one_error_line(err, bad.name)
    assert _listing(tmp_path) == ["other.h5", "text.h5", "truncated.h5"]


def test_output_exists_needs_force(capsys, tmp_path, files, model_file):
    out = tmp_path / "r.tsv"
    out.write_text("keep me\n")
    args = ["recover", str(files["test_counts"]), "--meta", str(files["test_meta"]), "--model", str(model_file),
            "--normalize", "--out", str(out), "-q"]
    code, _, err = _run(capsys, *args)
    assert code == 2
    _one_error_line(err, "r.tsv", "exists", "--force")
    assert out.read_text() == "keep me\n"
    # the second output exists: nothing is written, not even the first
    h5ad = tmp_path / "r.h5ad"
    h5ad.write_text("old")
    out.unlink()
    code, _, err = _run(capsys, *args, "--write-h5ad", str(h5ad))
    assert code == 2
    _one_error_line(err, "r.h5ad", "exists")
    assert _listing(tmp_path) == ["r.h5ad"]
    code, _, err = _run(capsys, *args, "--write-h5ad", str(h5ad), "--force")
    assert code == 0, err
    assert _listing(tmp_path) == ["r.h5ad", "r.tsv"]
    assert pd.read_csv(out, sep="\t", index_col=0).shape[0] == 400
    m = tmp_path / "m.h5"
    m.write_text("x")
    code, _, err = _run(capsys, "train", str(files["train_counts"]), "--meta", str(files["train_meta"]), "--out", str(m), "-q")
    assert code == 2
    _one_error_line(err, "m.h5", "exists")
    assert m.read_text() == "x"


def test_failure_after_reading_leaves_nothing(capsys, tmp_path, files):
    """Training fails inside the library (no trainable cell type): exit 2, no output, no temp file."""
    meta = tmp_path / "meta.tsv"
    m = pd.read_csv(files["train_meta"], sep="\t", index_col=0)
    m["SE"] = "SE01"  # one SE everywhere: nothing to train
    m.to_csv(meta, sep="\t")
    code, _, err = _run(capsys, "train", str(files["train_counts"]), "--meta", str(meta), "--normalize",
                        "--out", str(tmp_path / "m.h5"))
    assert code == 2
    error_lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(error_lines) == 1 and "train_counts.tsv.gz" in error_lines[0], err
    assert "Traceback" not in err
    assert _listing(tmp_path) == ["meta.tsv"]


def test_verbose_shows_the_traceback(capsys, tmp_path, files):
    code, _, err = _run(capsys, "train", str(tmp_path / "absent.tsv"), "--out", str(tmp_path / "m.h5"), "-v")
    assert code == 2 and "Traceback" in err and "absent.tsv" in err.splitlines()[-1]


def test_run_index_checks(capsys, tmp_path, files, monkeypatch):
    base = ["train", str(files["train_counts"]), "--meta", str(files["train_meta"]), "--out", str(tmp_path / "m.h5"), "-q"]
    code, _, err = _run(capsys, *base, "--runs", "3", "--run-index", "3")
    assert code == 2
    _one_error_line(err, "run index 3", "--runs 3")
    monkeypatch.setenv(RUN_ENV, "12")
    code, _, err = _run(capsys, *base)  # an array task without --runs
    assert code == 2
    _one_error_line(err, f"${RUN_ENV}", "--runs 1")
    monkeypatch.setenv(RUN_ENV, "abc")
    code, _, err = _run(capsys, *base, "--runs", "3")
    assert code == 2
    _one_error_line(err, f"${RUN_ENV}='abc'")
    assert _listing(tmp_path) == []


def test_aggregate_refuses_the_same_run_twice(capsys, tmp_path, files, model_file):
    code, _, err = _run(capsys, "aggregate", str(model_file), str(model_file), "--out", str(tmp_path / "e.h5"), "-q")
    assert code == 2
    _one_error_line(err, "seed 2024", "differ in seed")
    assert _listing(tmp_path) == []


def test_usage_errors_are_one_line(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "data.tsv")
    assert code == 2
    _one_error_line(err, "--out")
    code, _, err = _run(capsys, "recover", "d.tsv", "--out", "x.tsv")
    assert code == 2
    _one_error_line(err, "--model", "--published")
    code, _, err = _run(capsys, "train", "d.tsv", "--out", "m.h5", "--n-features-per-se", "lots")
    assert code == 2
    _one_error_line(err, "'lots'")


def test_table_formats(capsys, tmp_path, files, model_file):
    base = ["recover", str(files["test_counts"]), "--meta", str(files["test_meta"]), "--model", str(model_file),
            "--normalize", "-q"]
    code, _, err = _run(capsys, *base, "--out", str(tmp_path / "r.xlsx"))
    assert code == 2
    _one_error_line(err, "r.xlsx", "unknown table type")
    code, _, err = _run(capsys, *base, "--out", str(tmp_path / "r.csv"))
    assert code == 0, err
    tsv_code, _, _ = _run(capsys, *base, "--out", str(tmp_path / "r.tsv"))
    assert tsv_code == 0
    a = pd.read_csv(tmp_path / "r.csv", index_col=0, float_precision="round_trip")
    b = pd.read_csv(tmp_path / "r.tsv", sep="\t", index_col=0, float_precision="round_trip")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        code, _, err = _run(capsys, *base, "--out", str(tmp_path / "r.parquet"))
        assert code == 2
        _one_error_line(err, "r.parquet", "pyarrow")
    else:
        code, _, err = _run(capsys, *base, "--out", str(tmp_path / "r.parquet"))
        assert code == 0, err
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r.parquet"), b, check_exact=True, check_names=False)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_inspect(capsys, model_file):
    from ecorecover.model import load_model

    m = load_model(model_file)
    code, out, _ = _run(capsys, "inspect", str(model_file))
    assert code == 0
    assert f"cell types ({len(m)}): {', '.join(m.cell_types)}" in out
    assert f"SEs ({len(m.se_names)}): {', '.join(m.se_names)}" in out
    for ct in m.cell_types:
        row = next(ln for ln in out.splitlines() if ln.startswith(ct + " "))
        assert int(row.split()[1]) == m[ct].shape[0]
    assert "source: ecorecover.train" in out and "seed: 2024" in out


def test_demo_recovers_the_planted_ses(capsys):
    code, out, err = _run(capsys, "demo", "-q")
    assert code == 0, err
    acc = float(re.search(r"^accuracy: ([0-9.]+)", out, re.M).group(1))
    assert acc > 0.8, out
    again = _run(capsys, "demo", "-q")[1]
    strip = lambda s: re.sub(r"timings:.*", "", s)  # noqa: E731
    assert strip(again) == strip(out)  # deterministic


def test_help_for_every_command(capsys):
    for cmd in ("train", "aggregate", "recover", "inspect", "demo"):
        code, out, _ = _run(capsys, cmd, "--help")
        assert code == 0 and out.startswith(f"usage: ecorecover {cmd}")
    # the console script of the interpreter running the tests (a venv's), else the one on PATH
    beside = Path(sys.executable).parent / "ecorecover"
    exe = str(beside) if beside.is_file() else shutil.which("ecorecover")
    if exe is None:
        pytest.skip("the ecorecover console script is not on PATH (package not installed)")
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "usage: ecorecover" in res.stdout
    assert all(cmd in res.stdout for cmd in ("train", "aggregate", "recover", "inspect", "demo"))


def test_raw_counts_without_normalize_print_the_guard_message(capsys, tmp_path, files):
    code, _, err = _run(capsys, "train", str(files["train_counts"]), "--meta", str(files["train_meta"]),
                        "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ecorecover: warning:"), err
    assert "raw counts" in lines[0] and "--normalize" in lines[0]
    assert _listing(tmp_path) == ["m.h5"]


def test_demo_files_feed_the_other_commands(capsys, tmp_path):
    """demo --out-dir writes .h5ad files whose obs carry the keys: train and recover need no --meta."""
    d = tmp_path / "demo"
    code, out, err = _run(capsys, "demo", "-q", "--cells", "1500", "--held-out", "600", "--out-dir", str(d))
    assert code == 0, err
    assert _listing(d) == ["held_out.h5ad", "model.h5", "recovered.tsv", "train.h5ad"]
    code, _, err = _run(capsys, "train", str(d / "train.h5ad"), "--sample-key", "Sample", "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 0, err
    from ecorecover.model import load_model

    _same_weights(load_model(tmp_path / "m.h5"), load_model(d / "model.h5"))
    # an .h5ad without --normalize is read backed (X streamed from disk); same table
    code, _, err = _run(capsys, "recover", str(d / "held_out.h5ad"), "--model", str(tmp_path / "m.h5"),
                        "--out", str(tmp_path / "r.tsv"), "--write-h5ad", str(tmp_path / "r.h5ad"), "-q")
    assert code == 0, err
    got = pd.read_csv(tmp_path / "r.tsv", sep="\t", index_col=0, float_precision="round_trip")
    exp = pd.read_csv(d / "recovered.tsv", sep="\t", index_col=0, float_precision="round_trip")
    pd.testing.assert_frame_equal(got, exp, check_exact=True)
    import anndata as ad

    back = ad.read_h5ad(tmp_path / "r.h5ad")
    key = inspect.signature(ecorecover.recover).parameters["key_added"].default  # --key-added's default
    assert list(back.obs[key].astype(str)) == list(exp["SE"])
    assert (back.X != ad.read_h5ad(d / "held_out.h5ad").X).nnz == 0
    code, _, err = _run(capsys, "demo", "-q", "--cells", "1500", "--held-out", "600", "--out-dir", str(d))
    assert code == 2
    _one_error_line(err, "exists", "--force")


def test_recover_published_models_matches_r_default_branch(capsys, tmp_path, published_models_dir):
    """--published applies R's default-branch post-processing: SE labels as R's RecoverSE(Ws = NULL)."""
    from conftest import FIXTURES, read_table

    inp = FIXTURES / "recover" / "input"
    out = tmp_path / "pub.tsv"
    code, _, err = _run(capsys, "recover", str(inp / "counts.tsv.gz"), "--meta", str(inp / "meta.tsv"),
                        "--published", str(published_models_dir), "--normalize", "--out", str(out), "-q")
    assert code == 0, err
    got = pd.read_csv(out, sep="\t", index_col=0, float_precision="round_trip")
    ref = read_table("recover/recoverse_published_models/assignments_default_branch.tsv.gz")
    assert list(got.index) == list(ref["CID"])
    assert (got["SE"].to_numpy() == ref["SE"].to_numpy()).all()
    assert (got["InitSE"].to_numpy() == ref["InitSE"].to_numpy()).all()
    assert float(np.max(np.abs(got["PredScore"].to_numpy() - ref["PredScore"].to_numpy()))) <= 1e-6
    # a missing or partial directory: exit 2 naming it
    code, _, err = _run(capsys, "recover", str(inp / "counts.tsv.gz"), "--meta", str(inp / "meta.tsv"),
                        "--published", str(tmp_path), "--out", str(tmp_path / "x.tsv"), "-q")
    assert code == 2
    _one_error_line(err, str(tmp_path), "MERSCOPE_W_v1_B")


# -- issue 13: hints in the CLI's spelling, metadata mistakes, kept counts, logging, --layer --------
def _h5ad(files, name: str, path: Path, *, meta: bool = True):
    from ecorecover.readers import read_expression

    a = read_expression(files[f"{name}_counts"], meta=files[f"{name}_meta"] if meta else None)
    a.write_h5ad(path)
    return a


def test_api_hints_are_spelled_as_options():
    from ecorecover.cli import API_TO_FLAG, cli_spelling

    assert cli_spelling("none of the model genes is found; if one holds gene symbols, pass gene_symbols=") == \
        "none of the model genes is found; if one holds gene symbols, pass --gene-symbols"
    assert cli_spelling("choose another key_added=, or pass overwrite=True to replace it") == \
        "choose another --key-added, or pass --force to replace it"
    assert cli_spelling("layer='counts' is not a layer; use_raw=True needs adata.raw") == \
        "--layer 'counts' is not a layer; --use-raw needs adata.raw"
    assert cli_spelling("layer=None") == "no --layer"
    # only whole parameter names followed by '=': other text is left alone
    assert cli_spelling('var_names="gene_symbols", adata.layer=1, my_layer=2') == \
        'var_names="gene_symbols", adata.layer=1, my_layer=2'
    parser_flags = {a for act in _subparser("recover")._actions for a in act.option_strings} | \
        {a for act in _subparser("train")._actions for a in act.option_strings}
    # every option a hint can name exists
    named = set(API_TO_FLAG.values())
    assert named <= parser_flags, named - parser_flags
    assert cli_spelling("or log-normalise the counts (ecorecover.preprocessing.log_normalize)") == \
        "or log-normalise the counts (--normalize)"


def _subparser(name: str):
    from ecorecover.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[name]


def test_gene_symbols_option_recovers_data_named_by_ensembl_ids(capsys, tmp_path, files, model_file):
    """The library's hint ('pass gene_symbols=') reads '--gene-symbols' on the command line, and
    the option exists: the same table as data named by symbol."""
    a = _h5ad(files, "test", tmp_path / "sym.h5ad")
    ens = a.copy()
    ens.var["symbol"] = ens.var_names.to_numpy()
    ens.var_names = [f"ENSG{i:011d}" for i in range(ens.n_vars)]
    ens.write_h5ad(tmp_path / "ens.h5ad")
    base = ["recover", "--model", str(model_file), "--normalize", "-q"]
    code, _, err = _run(capsys, *base, str(tmp_path / "ens.h5ad"), "--out", str(tmp_path / "x.tsv"))
    assert code == 2
    line = _one_error_line(err, "ens.h5ad", "--gene-symbols")
    assert "gene_symbols=" not in line
    code, _, err = _run(capsys, *base, str(tmp_path / "ens.h5ad"), "--gene-symbols", "symbol", "--out", str(tmp_path / "e.tsv"))
    assert code == 0, err
    code, _, err = _run(capsys, *base, str(tmp_path / "sym.h5ad"), "--out", str(tmp_path / "s.tsv"))
    assert code == 0, err
    e = pd.read_csv(tmp_path / "e.tsv", sep="\t", index_col=0, float_precision="round_trip")
    s = pd.read_csv(tmp_path / "s.tsv", sep="\t", index_col=0, float_precision="round_trip")
    pd.testing.assert_frame_equal(e, s, check_exact=True)
    code, _, err = _run(capsys, *base, str(tmp_path / "ens.h5ad"), "--gene-symbols", "gene_name", "--out", str(tmp_path / "y.tsv"))
    assert code == 2
    _one_error_line(err, "'gene_name'", "--gene-symbols", "symbol")


def test_forgotten_meta_and_transposed_h5ad_say_what_is_wrong(capsys, tmp_path, files, model_file):
    _h5ad(files, "train", tmp_path / "bare.h5ad", meta=False)
    code, _, err = _run(capsys, "train", str(tmp_path / "bare.h5ad"), "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 2
    _one_error_line(err, "bare.h5ad", "'CellType'", "no cell metadata", "--meta")
    a = _h5ad(files, "train", tmp_path / "cells.h5ad")
    t = a.T.copy()  # genes x cells: the metadata is in var
    t.write_h5ad(tmp_path / "genes_by_cells.h5ad")
    code, _, err = _run(capsys, "train", str(tmp_path / "genes_by_cells.h5ad"), "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 2
    _one_error_line(err, "genes_by_cells.h5ad", "genes x cells", "transpose")
    # genes x cells without metadata: the gene ids in obs give it away
    bare = t.copy()
    bare.var = bare.var.iloc[:, :0]
    bare.obs_names = [f"ENSG{i:011d}" for i in range(bare.n_obs)]
    bare.write_h5ad(tmp_path / "ens_by_cells.h5ad")
    code, _, err = _run(capsys, "recover", str(tmp_path / "ens_by_cells.h5ad"), "--model", str(model_file),
                        "--out", str(tmp_path / "r.tsv"), "-q")
    assert code == 2
    _one_error_line(err, "look like genes", "transpose")
    assert _listing(tmp_path) == ["bare.h5ad", "cells.h5ad", "ens_by_cells.h5ad", "genes_by_cells.h5ad"]


def test_meta_written_by_pandas_with_its_index(capsys, tmp_path, files):
    """pandas' to_csv writes an empty first header field for the index; with a default index the
    first column is row numbers and the cell ids follow: both are read."""
    m = pd.read_csv(files["train_meta"], sep="\t", index_col=0, dtype=str)
    ref = tmp_path / "ref.h5"
    code, _, err = _run(capsys, "train", str(files["train_counts"]), "--meta", str(files["train_meta"]),
                        "--normalize", "--out", str(ref), "-q")
    assert code == 0, err
    from ecorecover.model import load_model

    variants = {
        "unnamed_index.csv": lambda p: m.rename_axis(None).to_csv(p),  # ",Sample,CellType,SE"
        "unnamed_index.tsv": lambda p: m.rename_axis(None).to_csv(p, sep="\t"),  # "\tSample..."
        "row_numbers.tsv": lambda p: m.reset_index().to_csv(p, sep="\t"),  # "\tcell\tSample..."
        "row_numbers.csv": lambda p: m.reset_index().rename(columns={"cell": "barcode"}).to_csv(p),
    }
    for name, write in variants.items():
        write(tmp_path / name)
        out = tmp_path / f"{name}.h5"
        code, _, err = _run(capsys, "train", str(files["train_counts"]), "--meta", str(tmp_path / name),
                            "--normalize", "--out", str(out), "-q")
        assert code == 0, (name, err)
        _same_weights(load_model(out), load_model(ref))


def test_write_h5ad_keeps_the_raw_counts(capsys, tmp_path, files, model_file):
    import anndata as ad

    from ecorecover.preprocessing import log_normalize
    from ecorecover.readers import read_expression

    out = tmp_path / "r.h5ad"
    code, _, err = _run(capsys, "recover", str(files["test_counts"]), "--meta", str(files["test_meta"]),
                        "--model", str(model_file), "--normalize", "--out", str(tmp_path / "r.tsv"),
                        "--write-h5ad", str(out), "-q")
    assert code == 0, err
    raw = read_expression(files["test_counts"]).X
    back = ad.read_h5ad(out)
    assert "counts" in back.layers
    assert (back.layers["counts"] != raw).nnz == 0
    assert (back.X != log_normalize(raw)).nnz == 0


def test_layer_option(capsys, tmp_path, files, model_file):
    """--layer reads layers[NAME] instead of X (with --normalize: raw counts in the layer)."""
    import anndata as ad

    a = _h5ad(files, "train", tmp_path / "train.h5ad")
    a.layers["raw"] = a.X.copy()
    a.X = a.X.power(2)  # X is something else: must not be used
    a.write_h5ad(tmp_path / "layered.h5ad")
    code, _, err = _run(capsys, "train", str(tmp_path / "layered.h5ad"), "--layer", "raw", "--normalize",
                        "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 0, err
    from ecorecover.model import load_model

    _same_weights(load_model(tmp_path / "m.h5"), load_model(model_file))
    code, _, err = _run(capsys, "train", str(tmp_path / "layered.h5ad"), "--layer", "counts", "--normalize",
                        "--out", str(tmp_path / "m2.h5"), "-q")
    assert code == 2
    _one_error_line(err, "layered.h5ad", "'counts'", "--layer", "raw")
    t = _h5ad(files, "test", tmp_path / "test.h5ad")
    code, _, err = _run(capsys, "recover", str(tmp_path / "test.h5ad"), "--model", str(model_file), "--normalize",
                        "--out", str(tmp_path / "x.tsv"), "-q")
    assert code == 0, err
    t.layers["raw"] = t.X.copy()
    t.X = t.X.power(2)
    t.write_h5ad(tmp_path / "test_layered.h5ad")
    code, _, err = _run(capsys, "recover", str(tmp_path / "test_layered.h5ad"), "--model", str(model_file), "--layer",
                        "raw", "--normalize", "--out", str(tmp_path / "y.tsv"), "--write-h5ad", str(tmp_path / "y.h5ad"), "-q")
    assert code == 0, err
    x = pd.read_csv(tmp_path / "x.tsv", sep="\t", index_col=0, float_precision="round_trip")
    y = pd.read_csv(tmp_path / "y.tsv", sep="\t", index_col=0, float_precision="round_trip")
    pd.testing.assert_frame_equal(x, y, check_exact=True)
    back = ad.read_h5ad(tmp_path / "y.h5ad")
    assert (back.X != t.X).nnz == 0 and (back.layers["raw"] != t.layers["raw"]).nnz == 0  # both kept


def test_verbose_logs_files_cells_per_type_and_timings(capsys, tmp_path, files, model_file, monkeypatch):
    import logging

    m = pd.read_csv(files["test_meta"], sep="\t", index_col=0)
    code, _, err = _run(capsys, "recover", str(files["test_counts"]), "--meta", str(files["test_meta"]),
                        "--model", str(model_file), "--normalize", "--out", str(tmp_path / "r.tsv"), "-v")
    assert code == 0, err
    assert re.search(r"read .*test_counts\.tsv\.gz: 400 cells x 100 genes, metadata from .*test_meta\.tsv \([0-9.]+ s\)", err), err
    counts = m["CellType"].value_counts()
    line = next(ln for ln in err.splitlines() if "cells per cell type" in ln)
    for ct, n in counts.items():
        assert f"{ct} {n}" in line, (ct, n, line)
    assert re.search(r"log-normalised .*\([0-9.]+ s\)", err) and re.search(r"recovered 400 cells in [0-9.]+ s", err), err
    assert " DEBUG " in err or " INFO " in err  # -v: timestamped records with levels and logger names

    # the library's loggers are children of "ecorecover": their debug records show with -v only
    from ecorecover.cli import inspect as inspect_cmd

    def emit(args):
        logging.getLogger("ecorecover.some_module").debug("library detail %d", 42)
        logging.getLogger("ecorecover.some_module").info("library progress")
        return 0

    monkeypatch.setattr(inspect_cmd, "run", emit)
    code, _, err = _run(capsys, "inspect", "x.h5", "-v")
    assert code == 0 and "DEBUG ecorecover.some_module: library detail 42" in err, err
    code, _, err = _run(capsys, "inspect", "x.h5")
    assert code == 0 and "library detail" not in err and "ecorecover: library progress" in err, err
    code, _, err = _run(capsys, "inspect", "x.h5", "-q")
    assert code == 0 and err == "", err


def test_readme_cli_walkthrough_runs_verbatim(tmp_path):
    """README's command-line walkthrough, run as written by bash in an empty directory, with
    `ecorecover` being the command of the package under test."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.is_file():
        pytest.skip(f"{readme} not found: tests run outside the source tree")
    text = readme.read_text(encoding="utf-8")
    start = text.index("A walkthrough on the built-in example")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S).group(1)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "ecorecover"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ecorecover.cli "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != RUN_ENV}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    d = work / "demo"
    assert {"train.h5ad", "held_out.h5ad", "my_model.h5", "ensemble.h5", "recovered_cli.tsv",
            "recovered_cli.h5ad"} <= set(_listing(d))
    assert re.search(r"^accuracy: 0\.9", res.stdout, re.M), res.stdout
    got = pd.read_csv(d / "recovered_cli.tsv", sep="\t", index_col=0)
    assert list(got.columns[:4]) == ["CellType", "InitSE", "SE", "PredScore"] and len(got) == 1000
    import anndata as ad

    back = ad.read_h5ad(d / "recovered_cli.h5ad")
    assert list(back.obs["SE_cli"].astype(str)) == list(got["SE"])
    truth = back.obs["SE"].astype(str).to_numpy()
    assert (got["SE"].to_numpy()[truth != "nonSE"] == truth[truth != "nonSE"]).mean() > 0.8


def test_use_raw_option(capsys, tmp_path, files, model_file):
    """--use-raw reads adata.raw (log-normalised, scanpy's convention) instead of X."""
    import scipy.sparse as sp

    from ecorecover.preprocessing import log_normalize

    a = _h5ad(files, "train", tmp_path / "train.h5ad")
    a.X = log_normalize(a.X)
    a.raw = a.copy()
    a.X = sp.csr_matrix(a.X.toarray() - 1.0)  # scaled-like X with negative values: must not be used
    a.write_h5ad(tmp_path / "with_raw.h5ad")
    code, _, err = _run(capsys, "train", str(tmp_path / "with_raw.h5ad"), "--out", str(tmp_path / "x.h5"), "-q")
    assert code == 2
    _one_error_line(err, "--use-raw")  # the library's hint, in the command line's spelling
    assert "use_raw=" not in err
    code, _, err = _run(capsys, "train", str(tmp_path / "with_raw.h5ad"), "--use-raw", "--out", str(tmp_path / "m.h5"), "-q")
    assert code == 0, err
    from ecorecover.model import load_model

    _same_weights(load_model(tmp_path / "m.h5"), load_model(model_file))
    code, _, err = _run(capsys, "train", str(tmp_path / "with_raw.h5ad"), "--use-raw", "--normalize",
                        "--out", str(tmp_path / "n.h5"), "-q")
    assert code == 2
    _one_error_line(err, "--normalize", "--use-raw")
    assert _listing(tmp_path) == ["m.h5", "train.h5ad", "with_raw.h5ad"]
