"""Run the Python code of docs/tutorial.md and write the figures and outputs it shows.

    python docs/make_tutorial.py                 # update docs/figures/*.png and the output blocks
    python docs/make_tutorial.py --out DIR       # only write the figures, into DIR
    python docs/make_tutorial.py --check         # run, and fail if a printed output changed

The tutorial's ```python blocks run in order in one namespace (matplotlib's Agg backend, the
working directory a temporary one). After each block:

- every figure the block created is saved, in creation order, under the names of the image
  links (``![...](figures/NAME.png)``) that follow the block before the next code block;
  the numbers must agree;
- what the block printed replaces the ```text block that directly follows it, if any.

``tests/test_tutorial.py`` runs :func:`run` with ``--out`` semantics, so the tutorial is
exercised by the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TUTORIAL = HERE / "tutorial.md"

_FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$\n?", re.S | re.M)
_IMAGE = re.compile(r"!\[[^\]]*\]\((figures/[^)\s]+\.png)\)")


@dataclass
class Block:
    code: str
    start: int  # span of the code fence in the markdown
    end: int
    figures: list[str] = field(default_factory=list)  # image paths (relative to docs/)
    output_span: tuple[int, int] | None = None  # span of the ```text block that follows, if any
    output: str = ""  # what the block printed


def parse(markdown: str) -> list[Block]:
    """The tutorial's python blocks, each with the figures and the output block that follow."""
    fences = list(_FENCE.finditer(markdown))
    blocks: list[Block] = []
    py = [m for m in fences if m.group(1) == "python"]
    for i, m in enumerate(py):
        nxt = py[i + 1].start() if i + 1 < len(py) else len(markdown)
        b = Block(code=m.group(2), start=m.start(), end=m.end())
        b.figures = _IMAGE.findall(markdown, m.end(), nxt)
        for f in fences:
            if f.start() >= m.end() and f.group(1) == "text" and not markdown[m.end() : f.start()].strip():
                b.output_span = (f.start(), f.end())
                break
        blocks.append(b)
    return blocks


def run(tutorial: Path = TUTORIAL, figdir: Path | None = None, *, verbose: bool = True) -> tuple[dict[str, Any], list[Block], list[warnings.WarningMessage]]:
    """Execute the tutorial; save its figures into ``figdir`` (default: docs/figures).

    Returns the namespace the code ran in, the blocks (with their printed outputs) and the
    warnings raised."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    markdown = tutorial.read_text()
    blocks = parse(markdown)
    figdir = Path(figdir) if figdir is not None else tutorial.parent / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    ns: dict[str, Any] = {"__name__": "__tutorial__"}
    caught: list[warnings.WarningMessage] = []
    cwd = os.getcwd()
    plt.close("all")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("default")
        os.chdir(tmp)
        try:
            for i, b in enumerate(blocks):
                before = set(plt.get_fignums())
                buf = io.StringIO()
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(buf):
                    exec(compile(b.code, f"{tutorial.name}[block {i + 1}]", "exec"), ns)
                b.output = buf.getvalue()
                new = [n for n in plt.get_fignums() if n not in before]
                if len(new) != len(b.figures):
                    raise RuntimeError(
                        f"block {i + 1} of {tutorial.name} created {len(new)} figure(s) but is followed by "
                        f"{len(b.figures)} image link(s) {b.figures}"
                    )
                for num, rel in zip(new, b.figures):
                    fig = plt.figure(num)
                    fig.savefig(figdir / Path(rel).name, dpi=100)
                    plt.close(fig)
                if verbose:
                    print(f"block {i + 1}/{len(blocks)}: {time.perf_counter() - t0:.1f} s"
                          + (f", wrote {', '.join(b.figures)}" if b.figures else ""), file=sys.stderr)
        finally:
            os.chdir(cwd)
        caught = list(rec)
    return ns, blocks, caught


def with_outputs(markdown: str, blocks: list[Block]) -> str:
    """``markdown`` with each block's ```text output replaced by what the block printed."""
    out, pos = [], 0
    for b in blocks:
        if b.output_span is None:
            continue
        a, e = b.output_span
        out.append(markdown[pos:a])
        out.append("```text\n" + b.output.rstrip("\n") + "\n```\n")
        pos = e
    out.append(markdown[pos:])
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="write the figures here and leave tutorial.md untouched")
    p.add_argument("--check", action="store_true", help="fail if a printed output differs from tutorial.md")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    ns, blocks, caught = run(TUTORIAL, args.out)
    for w in caught:
        print(f"warning: {w.category.__name__}: {w.message}", file=sys.stderr)
    markdown = TUTORIAL.read_text()
    updated = with_outputs(markdown, blocks)
    if args.check:
        if updated != markdown:
            print("tutorial.md outputs differ from a fresh run; run python docs/make_tutorial.py", file=sys.stderr)
            return 1
    elif args.out is None and updated != markdown:
        TUTORIAL.write_text(updated)
        print("updated the outputs in tutorial.md", file=sys.stderr)
    print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
