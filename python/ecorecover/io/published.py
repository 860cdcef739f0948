"""The published SpatialEcoTyper MERSCOPE models and R's post-processing of their results.

:func:`load_published_models` reads the nine ``MERSCOPE_W_v1_<CellType>`` models and
``SE_CellStates`` and records what R's ``RecoverSE(Ws = NULL)`` applies after recovery;
:func:`apply_published_postprocess` applies it to a recovery table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..errors import ModelFileError, ParameterError
from ..model import RecoveryModel
from .r_models import PathLike, read_r_models
from .rds import check_r_object, has_rdata, parse_rds_file, r_text

__all__ = [
    "load_published_models",
    "apply_published_postprocess",
    "PublishedModelsNotFoundError",
    "PUBLISHED_CELL_TYPES",
    "PUBLISHED_SE_RENAME",
]

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


class PublishedModelsNotFoundError(FileNotFoundError):
    """The published-models directory is missing or lacks some of the expected files."""


def _read_se_cellstates(path: Path) -> list[list[str]]:
    """SE_CellStates: ``SE01_Fibroblast`` per line (.txt) or a character vector (.rds)."""
    if path.suffix == ".rds":  # untrusted like the models: bounded, vectors only
        parsed = parse_rds_file(path)
        check_r_object(parsed.object, str(path))
        if parsed.object.info.type.name != "STR":
            raise ModelFileError(f"{path}: expected a character vector, got an R {parsed.object.info.type.name} object")
        entries = [str(x) for x in r_text(parsed.object, na="NA")]
    else:
        entries = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    pairs = []
    for e in entries:
        se, sep, ct = e.partition("_")
        if not sep or not se or not ct:
            raise ModelFileError(f"{path}: entry {e!r} is not of the form <SE>_<CellType> (e.g. SE01_Fibroblast)")
        pairs.append([se, ct])
    return pairs


def _published_files(root: Path) -> tuple[list[Path], Path]:
    """(the nine model files, the SE_CellStates file) of a published-models directory."""
    expected = [f"{_PUBLISHED_PREFIX}{ct}.rds|.tsv" for ct in PUBLISHED_CELL_TYPES] + ["SE_CellStates.txt|.rds"]
    if not root.is_dir():
        raise PublishedModelsNotFoundError(
            f"published models directory not found: {root}; expected it to hold: {', '.join(expected)}"
        )
    found = sorted(p.name for p in root.iterdir())
    prefer = (".rds", ".tsv") if has_rdata() else (".tsv", ".rds")
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
    if not has_rdata():
        states = [p for p in states if p.suffix == ".txt"] or states
    return files, states[0]


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
    files, states = _published_files(root)
    pairs = _read_se_cellstates(states)
    model = read_r_models(files)
    unknown = [se for se in model.se_names if se not in PUBLISHED_SE_RENAME]
    if unknown:
        raise ModelFileError(f"{root}: the models hold SE names {unknown} outside SE01..SE11; not the published models?")
    params = model.params
    params.update(
        reader="ecorecover.load_published_models",
        published="MERSCOPE_W_v1",
        se_cellstates_file=str(states),
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
    post = _checked_postprocess(assignments, model)
    out = assignments.copy()
    done = assignments.attrs.get("ecorecover", {}).get("params", {}).get("published_postprocess", False)
    if not done:  # else recover() already applied it (the model came from load_published_models)
        out["SE"] = _published_se(assignments, post)
    return out


def published_se(assignments: pd.DataFrame, model: RecoveryModel | Mapping[str, Any]) -> npt.NDArray[np.object_]:
    """The ``SE`` column :func:`apply_published_postprocess` gives ``assignments`` (checks as it
    does); :func:`ecorecover.recover` sets it in its own table, without copying the table."""
    return _published_se(assignments, _checked_postprocess(assignments, model))


def _checked_postprocess(assignments: pd.DataFrame, model: RecoveryModel | Mapping[str, Any]) -> Mapping[str, Any]:
    params = model.params if isinstance(model, RecoveryModel) else model
    post = params.get("postprocess") if isinstance(params, Mapping) else None
    if not isinstance(post, Mapping) or "se_cellstates" not in post or "rename" not in post:
        raise ParameterError(
            "model carries no published post-processing metadata (params['postprocess'] with "
            "'se_cellstates' and 'rename'); use ecorecover.load_published_models"
        )
    missing = [c for c in ("CellType", "SE") if c not in assignments.columns]
    if missing:
        raise KeyError(f"assignments lack column(s) {missing}; expected CellType and SE as recovery returns")
    return post


def _published_se(assignments: pd.DataFrame, post: Mapping[str, Any]) -> npt.NDArray[np.object_]:
    allowed = {tuple(p) for p in post["se_cellstates"]}
    # Decided once per distinct (SE, cell type) pair, not per cell (1M cells: no tuples per cell).
    se_code, se_names = pd.factorize(assignments["SE"].astype(object).to_numpy())
    ct_code, ct_names = pd.factorize(assignments["CellType"].astype(object).to_numpy())
    pair_ok = np.zeros((len(se_names), len(ct_names)), dtype=bool)
    for i, s in enumerate(se_names):
        pair_ok[i] = [(s, c) in allowed for c in ct_names]
    keep = (se_code >= 0) & (ct_code >= 0)
    keep[keep] = pair_ok[se_code[keep], ct_code[keep]]
    rename: Mapping[str, str] = post["rename"]
    new = np.array([rename.get(s, s) for s in se_names] + [_NON_SE], dtype=object)
    out: npt.NDArray[np.object_] = new[np.where(keep, se_code, len(se_names))]
    return out
