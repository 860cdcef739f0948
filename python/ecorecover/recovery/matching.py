"""The models matched against the data: gene matching, and the cell types that will be scored.

R's ``dat[rownames(dat) %in% model genes, ]``: :func:`match_groups` finds each model's genes
among the data's, reports the missing ones, and makes one :class:`Group` per cell type that has
a model, enough cells and enough genes. Cells left out here (no model, too few cells, too few
model genes) are counted in ``unscored`` and announced once each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._naming import model_genes
from .._warnings import warn
from ..errors import GeneMatchError, RecoveryWarning
from .constants import MIN_CELLS, MIN_MODEL_GENES, MISSING_GENES_WARN, NON_SE
from .inputs import RecoveryInput, unique_names

__all__ = ["Group", "GroupMatch", "case_hint", "gene_report", "match_groups", "new_group", "warn_unmodelled"]


@dataclass
class Group:
    """One cell type's model, resolved against the data's genes."""

    name: str
    w: pd.DataFrame
    genes: list[str]  # model genes (feature suffix removed), first-seen order
    cols: npt.NDArray[np.int64]  # column positions (into the kept columns) of the model genes present
    present: list[str]  # the model genes present in the data, model order
    posneg: bool  # W's first row name contains "__"
    rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # cells (input rows)
    n_scored: int = 0


@dataclass
class GroupMatch:
    """The scored cell types, the group of every cell (-1: none), the kept columns of the data
    (every model gene found) and the genes found per cell type."""

    groups: list[Group]
    group_of_row: npt.NDArray[np.int64]
    kept: list[int]
    genes_found: dict[str, dict[str, Any]]


def new_group(name: str, w: pd.DataFrame, genes: list[str], present: list[str], cols: list[int]) -> Group:
    """The :class:`Group` of model ``w`` (its ``genes``, those ``present`` at columns ``cols``),
    without cells yet; posneg features as R decides: W's first row name contains ``"__"``."""
    return Group(name=name, w=w, genes=genes, cols=np.array(cols, dtype=np.int64), present=present,
                 posneg="__" in str(w.index[0]))


def case_hint(missing: Sequence[str], genes: Sequence[str]) -> str:
    """A note when missing model genes match data genes up to case (mouse symbols, lower case)."""
    lower: dict[str, str] = {}
    for g in genes:
        lower.setdefault(g.lower(), g)
    pairs = [(m, lower[m.lower()]) for m in missing if m.lower() in lower]
    if not pairs:
        return ""
    eg = ", ".join(f"{d!r} for {m!r}" for m, d in pairs[:3])
    return (
        f"; {len(pairs)} of them match data genes up to letter case (e.g. {eg}): rename the data's genes "
        "(e.g. to upper case) or the model's features to match"
    )


def gene_report(ct: str, genes: list[str], present: list[str], data_genes: Sequence[str], n_ct: int) -> dict[str, Any]:
    """genes_found entry of a cell type; warns when over 10% of the model's genes are missing."""
    have = set(present)
    missing = [g for g in genes if g not in have]
    frac = len(present) / len(genes)
    if n_ct > 0 and len(missing) > MISSING_GENES_WARN * len(genes):
        warn(
            f"only {len(present)} of the {len(genes)} genes of the {ct!r} model ({100 * frac:.1f}%) are in the "
            f"data; missing e.g. {missing[:6]} (all listed in uns[key_added]['genes_found'][{ct!r}]['missing']). "
            "Its scores rest on the genes found; check for renamed genes (e.g. IL8 = CXCL8)"
            + case_hint(missing, data_genes),
            RecoveryWarning,
        )
    return {"found": len(present), "total": len(genes), "fraction": frac, "missing": missing}


def _no_gene_error(union: list[str], inp: RecoveryInput, gene_symbols: str | None) -> GeneMatchError:
    by_var_names = inp.adata is not None and gene_symbols is None
    cols = [] if inp.var is None else list(inp.var.columns)[:10]
    hint = f"; adata.var has columns {cols}: if one holds gene symbols, pass gene_symbols=" if by_var_names else ""
    where = "var_names" if by_var_names else "genes"
    return GeneMatchError(
        f"none of the {len(union)} model genes is found in the data: the model uses identifiers like "
        f"{union[:5]}, the data's {where} look like {inp.genes[:5]}{hint}{case_hint(union, inp.genes)}"
    )


def match_groups(
    models: Mapping[str, pd.DataFrame], labels: npt.NDArray[np.object_], inp: RecoveryInput,
    gene_symbols: str | None, counts: pd.Series, unscored: dict[str, int],
) -> GroupMatch:
    """The scored cell types (model, enough cells, enough genes), the group of every cell, the
    kept columns and the genes found per cell type (R: ``dat[rownames(dat) %in% model genes, ]``)."""
    gene_pos = unique_names(inp.genes, "gene names in the data")
    mgenes = {ct: model_genes(w.index) for ct, w in models.items()}
    union = list(dict.fromkeys(g for ct in models for g in mgenes[ct]))
    kept = sorted(gene_pos[g] for g in union if g in gene_pos)
    if not kept:
        raise _no_gene_error(union, inp, gene_symbols)
    kept_pos = {c: i for i, c in enumerate(kept)}
    out = GroupMatch([], np.full(len(labels), -1, dtype=np.int64), kept, {})
    for ct, w in models.items():
        present = [g for g in mgenes[ct] if g in gene_pos]
        n_ct = int(counts.get(ct, 0))
        out.genes_found[ct] = gene_report(ct, mgenes[ct], present, inp.genes, n_ct)
        if n_ct == 0:
            continue
        if n_ct < MIN_CELLS:
            unscored["too_few_cells"] += n_ct
            continue
        if len(present) < MIN_MODEL_GENES:
            warn(
                f"{n_ct} {ct!r} cells are not scored: only {len(present)} of the model's genes are in the "
                f"data (at least {MIN_MODEL_GENES} needed; R returns NaN scores)",
                RecoveryWarning,
            )
            unscored["too_few_model_genes"] += n_ct
            continue
        g = new_group(ct, w, mgenes[ct], present, [kept_pos[gene_pos[x]] for x in present])
        g.rows = np.flatnonzero(labels == ct)
        out.group_of_row[g.rows] = len(out.groups)
        out.groups.append(g)
    return out


def warn_unmodelled(
    models: Mapping[str, Any], labels: npt.NDArray[np.object_], counts: pd.Series, unscored: dict[str, int],
) -> None:
    """Warn about (and count) the cells of types too small or without a model."""
    small = [ct for ct in models if ct in counts.index and int(counts[ct]) < MIN_CELLS]
    if small:
        warn(
            f"{unscored['too_few_cells']} cells of cell types with fewer than {MIN_CELLS} cells are not scored "
            f"(scores 0, SE {NON_SE!r}, scored False): " + ", ".join(f"{ct} ({int(counts[ct])})" for ct in small),
            RecoveryWarning,
        )
    no_model = [ct for ct in counts.index if ct not in models]
    n_unlabelled = int(sum(1 for x in labels if x is None))
    unscored["no_model"] = int(sum(int(counts[ct]) for ct in no_model)) + n_unlabelled
    if unscored["no_model"]:
        warn(
            f"{unscored['no_model']} cells have no model for their cell type and are not scored (scores 0, SE "
            f"{NON_SE!r}, scored False): " + ", ".join(f"{ct} ({int(counts[ct])})" for ct in no_model[:10])
            + (f"{', ' if no_model else ''}unlabelled ({n_unlabelled})" if n_unlabelled else ""),
            RecoveryWarning,
        )
