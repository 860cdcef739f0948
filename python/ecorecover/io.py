"""Readers for R SpatialEcoTyper recovery models (.rds / .tsv) and the published MERSCOPE models.

``.rds`` files are read with the ``rdata`` package (``pip install ecorecover[rds]``); ``.tsv``
files need nothing extra and are parsed exactly (17-digit numbers round-trip).
"""

from __future__ import annotations

import csv
import gzip
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from ._collate import collate_sorted
from .model import RecoveryModel

__all__ = [
    "read_r_models",
    "load_published_models",
    "apply_published_postprocess",
    "PublishedModelsNotFoundError",
    "PUBLISHED_CELL_TYPES",
    "PUBLISHED_SE_RENAME",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Cell types of the published MERSCOPE models (``MERSCOPE_W_v1_<CellType>.rds`` / ``.tsv``).
PUBLISHED_CELL_TYPES: tuple[str, ...] = (
    "B", "CD4T", "CD8T", "DC", "Endothelial", "Fibroblast", "Macrophage", "NK", "Plasma",
)
#: R's renaming of the published SEs on its default ``RecoverSE(Ws = NULL)`` branch (METHOD.md 4.4).
PUBLISHED_SE_RENAME: dict[str, str] = dict(
    zip(
        [f"SE{i:02d}" for i in range(1, 12)],
        ["SE1", "SE2", "SE3", "SE4", "SE5", "NonSE", "SE6", "SE7", "NonSE", "SE8", "SE9"],
    )
)
_PUBLISHED_PREFIX = "MERSCOPE_W_v1_"
_NON_SE = "NonSE"

# "<anything>_W_v<digits>_<CellType>.<ext>": the published naming scheme.
_PUBLISHED_NAME = re.compile(r"^(?:.*_)?W_v\d+_(?P<ct>.+)$")
_MODEL_SUFFIXES = (".rds", ".tsv", ".tsv.gz")


class PublishedModelsNotFoundError(FileNotFoundError):
    """The published-models directory is missing or lacks some of the expected files."""


def _import_rdata() -> Any:
    try:
        import rdata
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading R .rds files needs the 'rdata' package: pip install ecorecover[rds] "
            "(or read the .tsv versions of the models instead)"
        ) from None
    return rdata


def _has_rdata() -> bool:
    try:
        import rdata  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suf in (".tsv.gz", ".tsv", ".rds"):
        if name.endswith(suf):
            return suf
    return None


def _cell_type_from_name(path: Path) -> str:
    suf = _suffix(path)
    stem = path.name[: -len(suf)] if suf else path.stem
    m = _PUBLISHED_NAME.match(stem)
    return m.group("ct") if m else stem


# -- readers for one file ---------------------------------------------------------------------
def _read_tsv(path: Path) -> pd.DataFrame:
    """A W matrix written by R (``write.table``) or pandas: features in the first column."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        first = next(reader, None)
    if header is None:
        raise ValueError(f"{path} is empty, expected a W matrix (features x SEs) as TSV")
    # R's write.table(row.names = TRUE) omits the row-name column from the header.
    ses = header if first is not None and len(first) == len(header) + 1 else header[1:]
    dup = sorted({s for s in ses if ses.count(s) > 1})
    if dup:
        raise ValueError(f"{path}: duplicated SE column names {dup}")
    df = pd.read_csv(
        path, sep="\t", header=None, skiprows=1, index_col=0, float_precision="round_trip",
        dtype={0: str}, keep_default_na=False, na_values={c: ["NA", "NaN", ""] for c in range(1, len(ses) + 1)},
    )
    if df.shape[1] != len(ses):
        raise ValueError(f"{path}: the header names {len(ses)} SE columns but the rows hold {df.shape[1]}")
    df.columns = ses
    df.index.name = None
    return df


def _r_object_to_frame(obj: Any, what: str) -> pd.DataFrame:
    """Convert one rdata-converted R object (matrix with dimnames or data.frame) to a W frame."""
    if isinstance(obj, pd.DataFrame):
        if isinstance(obj.index, pd.RangeIndex):
            raise ValueError(f"{what}: the data.frame has no row names; the feature names are needed")
        return obj
    values = getattr(obj, "values", obj)
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"{what}: expected a matrix (features x SEs), got an R object of shape {values.shape}")
    coords = [getattr(obj, "coords", {}).get(d) for d in getattr(obj, "dims", ())]
    if len(coords) != 2 or any(c is None for c in coords):
        raise ValueError(f"{what}: the matrix has no row and column names (dimnames); feature and SE names are needed")
    return pd.DataFrame(values, index=[str(x) for x in coords[0].values], columns=[str(x) for x in coords[1].values])


def _read_rds(path: Path) -> dict[str | None, pd.DataFrame]:
    """An .rds holding one W matrix (key None) or a named list of them (keys = cell types)."""
    rdata = _import_rdata()
    try:
        obj = rdata.read_rds(path)
    except Exception as exc:  # rdata raises assorted errors on bad input
        raise ValueError(f"cannot read {path} as an R .rds file: {exc}") from None
    if isinstance(obj, Mapping):
        names = [str(k) for k in obj]
        if any(not n for n in names):
            raise ValueError(f"{path}: the list has unnamed elements; elements must be named by cell type")
        return {str(k): _r_object_to_frame(v, f"{path}[[{str(k)!r}]]") for k, v in obj.items()}
    if isinstance(obj, list):
        raise ValueError(f"{path}: holds an unnamed list; a list of W matrices must be named by cell type")
    return {None: _r_object_to_frame(obj, str(path))}


# -- public API ---------------------------------------------------------------------------------
def _directory_files(directory: Path) -> list[Path]:
    """Model files of a directory, one per cell type (.rds preferred when rdata is available)."""
    candidates = [p for p in directory.iterdir() if p.is_file() and _suffix(p)]
    published = [p for p in candidates if _PUBLISHED_NAME.match(p.name[: -len(_suffix(p))])]
    if published:  # other files (SE_CellStates.rds, marker lists...) are not models
        candidates = published
    by_ct: dict[str, dict[str, Path]] = {}
    for p in candidates:
        by_ct.setdefault(_cell_type_from_name(p), {})[_suffix(p)] = p
    order = [".rds", ".tsv", ".tsv.gz"] if _has_rdata() else [".tsv", ".tsv.gz", ".rds"]
    return [next(by_ct[ct][s] for s in order if s in by_ct[ct]) for ct in collate_sorted(by_ct)]


def read_r_models(path_or_paths: PathLike | Sequence[PathLike], *, source: str | None = None) -> RecoveryModel:
    """Read R SpatialEcoTyper recovery models (lists of W matrices) into a :class:`RecoveryModel`.

    Parameters
    ----------
    path_or_paths
        One of

        - a directory of per-cell-type W files: the published ``MERSCOPE_W_v1_<CellType>.rds``
          / ``.tsv`` (files not following ``..._W_v<n>_<CellType>`` are then ignored, such as
          ``SE_CellStates.rds``), or ``<CellType>.rds`` / ``.tsv`` / ``.tsv.gz``. Cell types
          are sorted as R sorts strings. When a cell type has both an ``.rds`` and a ``.tsv``,
          the ``.rds`` is read if ``rdata`` is installed, the ``.tsv`` otherwise;
        - an ``.rds`` file holding a named list of W matrices (as ``NMFGenerateWList`` returns;
          cell types = list names, in list order), or a single W matrix;
        - a ``.tsv`` / ``.tsv.gz`` file (one W; first column = feature names);
        - a list of such files, in the order given.

        The cell type of a single-matrix file is its name without extension and without a
        ``..._W_v<n>_`` prefix (``MERSCOPE_W_v1_CD8T.rds`` -> ``CD8T``).
    source
        Provenance to record; default ``"R:<path>"``.

    Returns
    -------
    RecoveryModel
        W as R stores it (features x SEs, R's row and column order, values bit-exact).
        ``params["files"]`` maps each cell type to the file it came from.

    Raises
    ------
    FileNotFoundError
        A path does not exist, or a directory holds no model files.
    ValueError
        A file cannot be parsed, a matrix has no dimnames, two files give the same cell type,
        or a W holds negative or non-finite values.
    ImportError
        An ``.rds`` file is read without the ``rdata`` package installed.
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        root = Path(path_or_paths)
        if not root.exists():
            raise FileNotFoundError(f"no such file or directory: {root}")
        if root.is_dir():
            files = _directory_files(root)
            if not files:
                raise FileNotFoundError(
                    f"{root} holds no model files (expected <CellType>.rds / .tsv / .tsv.gz or "
                    f"MERSCOPE_W_v1_<CellType>.rds / .tsv); found: {sorted(p.name for p in root.iterdir())}"
                )
        else:
            files = [root]
        default_source = f"R:{root}"
    else:
        files = [Path(p) for p in path_or_paths]
        if not files:
            raise ValueError("path_or_paths is an empty list; give at least one model file")
        for p in files:
            if not p.is_file():
                raise FileNotFoundError(f"model file not found: {p}")
        default_source = "R:" + (str(files[0]) if len(files) == 1 else ", ".join(str(p) for p in files))

    weights: dict[str, pd.DataFrame] = {}
    origin: dict[str, str] = {}
    for p in files:
        suf = _suffix(p)
        if suf == ".rds":
            read = _read_rds(p)
        elif suf in (".tsv", ".tsv.gz"):
            read = {None: _read_tsv(p)}
        else:
            raise ValueError(f"{p}: unknown model file type; expected .rds, .tsv or .tsv.gz")
        for ct, w in read.items():
            ct = _cell_type_from_name(p) if ct is None else ct
            if ct in weights:
                raise ValueError(f"cell type {ct!r} is given twice: by {origin[ct]} and by {p}")
            weights[ct] = w
            origin[ct] = str(p)
    params = {"reader": "ecorecover.read_r_models", "files": origin}
    return RecoveryModel(weights, params=params, source=source or default_source)


def _read_se_cellstates(path: Path) -> list[list[str]]:
    """SE_CellStates: ``SE01_Fibroblast`` per line (.txt) or a character vector (.rds)."""
    if path.suffix == ".rds":
        entries = [str(x) for x in np.asarray(_import_rdata().read_rds(path)).ravel()]
    else:
        entries = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    pairs = []
    for e in entries:
        se, sep, ct = e.partition("_")
        if not sep or not se or not ct:
            raise ValueError(f"{path}: entry {e!r} is not of the form <SE>_<CellType> (e.g. SE01_Fibroblast)")
        pairs.append([se, ct])
    return pairs


def load_published_models(path: PathLike) -> RecoveryModel:
    """Load the published SpatialEcoTyper MERSCOPE models, with R's default-branch metadata.

    Parameters
    ----------
    path
        Directory holding ``MERSCOPE_W_v1_<CellType>.rds`` or ``.tsv`` for the 9 cell types
        (B, CD4T, CD8T, DC, Endothelial, Fibroblast, Macrophage, NK, Plasma) and
        ``SE_CellStates.txt`` (or ``.rds``). The models are not shipped (non-commercial
        licence); download them from the SpatialEcoTyper repository.

    Returns
    -------
    RecoveryModel
        W exactly as published (SE names SE01..SE11). What R's ``RecoverSE(Ws = NULL)`` applies
        after recovery is recorded in ``params["postprocess"]``: ``se_cellstates`` (the allowed
        ``[SE, CellType]`` pairs) and ``rename`` (SE01..SE11 -> SE1..SE9 / NonSE); apply it to
        recovery results with :func:`apply_published_postprocess`. Recovery scores and InitSE
        are the same with or without it.

    Raises
    ------
    PublishedModelsNotFoundError
        (a ``FileNotFoundError``) the directory is missing or incomplete; the message lists
        the files expected and those found.
    """
    root = Path(path)
    expected = [f"{_PUBLISHED_PREFIX}{ct}.rds|.tsv" for ct in PUBLISHED_CELL_TYPES] + ["SE_CellStates.txt|.rds"]
    if not root.is_dir():
        raise PublishedModelsNotFoundError(
            f"published models directory not found: {root}; expected it to hold: {', '.join(expected)}"
        )
    found = sorted(p.name for p in root.iterdir())
    prefer = (".rds", ".tsv") if _has_rdata() else (".tsv", ".rds")
    files: list[Path] = []
    missing: list[str] = []
    for ct in PUBLISHED_CELL_TYPES:
        hit = [root / f"{_PUBLISHED_PREFIX}{ct}{s}" for s in prefer if (root / f"{_PUBLISHED_PREFIX}{ct}{s}").is_file()]
        if hit:
            files.append(hit[0])
        else:
            missing.append(f"{_PUBLISHED_PREFIX}{ct}.rds|.tsv")
    states = [root / "SE_CellStates.txt", root / "SE_CellStates.rds"]
    states = [p for p in states if p.is_file()]
    if not states:
        missing.append("SE_CellStates.txt|.rds")
    if missing:
        raise PublishedModelsNotFoundError(
            f"incomplete published models directory {root}: missing {', '.join(missing)}. "
            f"Expected: {', '.join(expected)}. Found: {', '.join(found) if found else 'nothing'}"
        )
    if not _has_rdata():
        states = [p for p in states if p.suffix == ".txt"] or states
    pairs = _read_se_cellstates(states[0])
    model = read_r_models(files)
    unknown = [se for se in model.se_names if se not in PUBLISHED_SE_RENAME]
    if unknown:
        raise ValueError(f"{root}: the models hold SE names {unknown} outside SE01..SE11; not the published models?")
    params = model.params
    params.update(
        reader="ecorecover.load_published_models",
        published="MERSCOPE_W_v1",
        se_cellstates_file=str(states[0]),
        postprocess={"se_cellstates": pairs, "rename": dict(PUBLISHED_SE_RENAME)},
    )
    return RecoveryModel({ct: model[ct] for ct in model}, params=params, source=f"R:{root}")


def apply_published_postprocess(assignments: pd.DataFrame, model: RecoveryModel | Mapping[str, Any]) -> pd.DataFrame:
    """Apply R's default-branch post-processing of the published models to recovery results.

    R's ``RecoverSE(Ws = NULL)`` sets ``SE`` to ``"NonSE"`` for every cell whose
    ``(SE, CellType)`` pair is not in ``SE_CellStates`` (this includes cells already NonSE and
    cell types without a model), then renames the kept SEs (SE01 -> SE1, ..., SE06 -> NonSE,
    ...). ``InitSE``, ``PredScore`` and the scores are left as they are (R keeps SE01..SE11
    there).

    Parameters
    ----------
    assignments
        Recovery results with (at least) columns ``CellType`` and ``SE``.
    model
        The model from :func:`load_published_models` (or its ``params`` dict), carrying
        ``params["postprocess"]``.

    Returns
    -------
    pandas.DataFrame
        A copy of ``assignments`` with the ``SE`` column post-processed (strings).
        :func:`ecorecover.recover` applies this itself to models from
        :func:`load_published_models`; a table it already post-processed is returned as is.
    """
    params = model.params if isinstance(model, RecoveryModel) else model
    post = params.get("postprocess") if isinstance(params, Mapping) else None
    if not isinstance(post, Mapping) or "se_cellstates" not in post or "rename" not in post:
        raise ValueError(
            "model carries no published post-processing metadata (params['postprocess'] with "
            "'se_cellstates' and 'rename'); use ecorecover.load_published_models"
        )
    missing = [c for c in ("CellType", "SE") if c not in assignments.columns]
    if missing:
        raise KeyError(f"assignments lack column(s) {missing}; expected CellType and SE as recovery returns")
    done = assignments.attrs.get("ecorecover", {}).get("params", {}).get("published_postprocess", False)
    if done:  # recover() already applied it (the model came from load_published_models)
        return assignments.copy()
    allowed = pd.MultiIndex.from_tuples([tuple(p) for p in post["se_cellstates"]])
    se = assignments["SE"].astype(object).to_numpy()
    ct = assignments["CellType"].astype(object).to_numpy()
    keep = pd.MultiIndex.from_arrays([se, ct]).isin(allowed)
    rename: Mapping[str, str] = post["rename"]
    out = assignments.copy()
    out["SE"] = np.array([rename.get(s, s) if k else _NON_SE for s, k in zip(se, keep)], dtype=object)
    return out

