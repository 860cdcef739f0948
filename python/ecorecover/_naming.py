"""Names of posneg features: the one place that knows the ``GENE__pos`` / ``GENE__neg`` convention.

R's posneg step splits each scaled gene into a positive part, named ``GENE__pos``, and a negative
part, ``GENE__neg``; a model's W is indexed by these feature names (or by plain gene names when
it was trained without posneg).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["NEG", "POS", "SUFFIXES", "feature_names", "gene_of", "is_pos", "model_genes"]

#: Suffix of a gene's positive part.
POS = "__pos"
#: Suffix of a gene's negative part.
NEG = "__neg"
#: Both suffixes, positive first.
SUFFIXES = (POS, NEG)


def gene_of(feature: object) -> str:
    """The gene of a feature name: one trailing ``__pos`` / ``__neg`` removed (plain names as they are)."""
    name = str(feature)
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_pos(feature: object) -> bool:
    """Whether a feature name is a gene's positive part (``GENE__pos``)."""
    return str(feature).endswith(POS)


def model_genes(features: Iterable[object]) -> list[str]:
    """The genes of a list of feature names, each once, in first-seen order."""
    return list(dict.fromkeys(gene_of(f) for f in features))


def feature_names(genes: Iterable[object]) -> list[str]:
    """Feature names of posneg over ``genes``: every ``GENE__pos``, then every ``GENE__neg``."""
    names = [str(g) for g in genes]
    return [g + POS for g in names] + [g + NEG for g in names]
