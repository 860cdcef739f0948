"""``ecorecover inspect``: print a model's provenance, cell types, SEs, feature counts and
parameters (ecorecover model files and R models)."""

from __future__ import annotations

import argparse
import json
import sys

from .._naming import model_genes
from .reading import load_model

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Describe the model file ``args.model`` on stdout."""
    model = load_model(args.model)
    out = sys.stdout
    params = model.params
    print(f"model: {args.model}", file=out)
    print(f"source: {model.source or 'unknown'}", file=out)
    if (model.source or "").startswith("R:"):
        print(f"format: R SpatialEcoTyper W matrices (read by ecorecover {params.get('ecorecover_version', '?')})", file=out)
    else:
        print(f"written by: ecorecover {params.get('ecorecover_version', '?')}", file=out)
    if model.runs:
        print(f"ensemble of {len(model.runs)} run(s)", file=out)
    elif "run_index" in params:
        print(f"run {params['run_index']} of {params.get('runs_total', '?')} (seed {params.get('seed')})", file=out)
    ses = model.se_names
    print(f"cell types ({len(model)}): {', '.join(model.cell_types)}", file=out)
    print(f"SEs ({len(ses)}): {', '.join(ses)}", file=out)
    print(f"genes: {len(model.genes)}", file=out)
    width = max([len("cell type")] + [len(c) for c in model.cell_types])
    print(f"{'cell type':<{width}}  features  genes  SEs", file=out)
    for ct in model.cell_types:
        w = model[ct]
        genes = model_genes(w.index)
        print(f"{ct:<{width}}  {w.shape[0]:>8}  {len(genes):>5}  {w.shape[1]:>3}  ({', '.join(map(str, w.columns))})", file=out)
    shown = {k: v for k, v in params.items() if k != "ecorecover_version"}
    if shown:
        print("parameters:", file=out)
        for k, v in shown.items():
            text = json.dumps(v) if not isinstance(v, str) else v
            if len(text) > 200:
                text = text[:197] + "..."
            print(f"  {k}: {text}", file=out)
    return 0
