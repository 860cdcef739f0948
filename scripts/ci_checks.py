#!/usr/bin/env python3
"""Small checks used by .ci/run (standard library only).

  ci_checks.py junit LABEL REPORT.xml      how many tests ran; fails when none ran or any failed
  ci_checks.py coverage DEV.xml WHEEL.xml  fails when a test that ran against the development
                                           build did not run against the wheel
  ci_checks.py published LABEL REPORT.xml  fails when a test skipped because the published models
                                           were not found although $ECORECOVER_PUBLISHED_MODELS
                                           names an existing directory
  ci_checks.py location ROOT               run by the venv's interpreter: fails unless ecorecover
                                           is imported from this venv's site-packages, not ROOT
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _skip_reasons(path: str) -> dict[str, str]:
    """Test id -> the message of its skip, for the skipped tests of a JUnit report."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None and case.find("failure") is None and case.find("error") is None:
            out[f'{case.get("classname")}::{case.get("name")}'] = " ".join(
                [skipped.get("message") or "", skipped.text or ""]).strip()
    return out


def _outcomes(path: str) -> dict[str, str]:
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "ran"
        out[f'{case.get("classname")}::{case.get("name")}'] = outcome
    return out


def junit(label: str, path: str) -> int:
    outcomes = list(_outcomes(path).values())
    ran, skipped, failed = (outcomes.count(k) for k in ("ran", "skipped", "failed"))
    print(f"-- {label}: {ran} tests passed, {skipped} skipped, {failed} failed or errored")
    if ran == 0:
        print(f"-- {label}: no test ran", file=sys.stderr)
    return 0 if ran > 0 and failed == 0 else 1


def coverage(dev_path: str, wheel_path: str) -> int:
    dev, whl = _outcomes(dev_path), _outcomes(wheel_path)
    reasons = _skip_reasons(wheel_path)
    lost = sorted(t for t, o in dev.items() if o == "ran" and whl.get(t) != "ran")
    gained = sorted(t for t, o in whl.items() if o == "ran" and dev.get(t) != "ran")
    if gained:
        print("-- ran only against the installed wheel: " + ", ".join(gained))
    if lost:
        print("-- ran against the development build but not against the wheel:\n   "
              + "\n   ".join(f"{t}: {whl.get(t, 'absent')} {reasons.get(t, '')}".rstrip() for t in lost))
    return 1 if lost else 0


def published(label: str, path: str) -> int:
    """Tests needing the published models must not skip when the models are there."""
    where = os.environ.get("ECORECOVER_PUBLISHED_MODELS", "")
    if not where or not Path(where).is_dir():
        print(f"-- {label}: ECORECOVER_PUBLISHED_MODELS is not an existing directory; tests needing the "
              "published models were allowed to skip")
        return 0
    bad = sorted(t for t, r in _skip_reasons(path).items() if "published" in r.lower())
    if bad:
        print(f"-- {label}: {len(bad)} test(s) skipped for want of the published models although "
              f"ECORECOVER_PUBLISHED_MODELS={where} exists:\n   " + "\n   ".join(bad), file=sys.stderr)
        return 1
    print(f"-- {label}: no test skipped for want of the published models ({where})")
    return 0


def location(root: str) -> int:
    import sysconfig

    import ecorecover

    pkg = Path(ecorecover.__file__).resolve().parent
    site = Path(sysconfig.get_paths()["platlib"]).resolve()
    print(f"-- ecorecover {ecorecover.__version__} imported from {pkg}")
    if pkg.parent != site or Path(root).resolve() in pkg.parents:
        print(f"ecorecover was imported from {pkg}, not from the venv's site-packages {site}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    commands = {"junit": (junit, 2), "coverage": (coverage, 2), "location": (location, 1), "published": (published, 2)}
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    func, _ = commands[argv[0]]
    return func(*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
