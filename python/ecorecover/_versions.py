"""Versions of ecorecover, its compiled core, Python, the platform and key dependencies, for bug
reports (:func:`show_versions`)."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from typing import Literal, TextIO, overload

__all__ = ["show_versions"]

#: Dependencies worth naming in a bug report: the required ones, then the optional ones.
DEPENDENCIES: tuple[str, ...] = (
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "h5py",
    "tqdm",
    "rdata",
    "matplotlib",
)

#: Environment variables that change how the core runs.
ENV_VARS: tuple[str, ...] = ("RAYON_NUM_THREADS", "OMP_NUM_THREADS")

Info = dict[str, dict[str, str]]


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _install_kind() -> str:
    """How ecorecover is installed: "installed" (wheel, sdist or index), "editable (<url>)" or
    "source tree (not installed)"."""
    try:
        dist = metadata.distribution("ecorecover")
    except metadata.PackageNotFoundError:
        return "source tree (not installed)"
    try:
        direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct_url = {}
    if direct_url.get("dir_info", {}).get("editable", False):
        return f"editable ({direct_url.get('url', 'unknown source')})"
    return "installed"


def _cpu_simd() -> str:
    """The widest x86 SIMD extension this CPU has (Linux /proc/cpuinfo), "unknown" elsewhere.
    The build's own level is ``build.simd``."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((ln.split(":", 1)[1].split() for ln in fh if ln.startswith("flags")), [])
    except OSError:
        return "unknown"
    for flag in ("avx512f", "avx2", "avx", "sse4_2", "sse2"):
        if flag in flags:
            return flag
    return "unknown"


def _collect() -> Info:
    from . import __file__ as pkg_file
    from . import __version__

    info: Info = {
        "ecorecover": {
            "version": __version__,
            "location": os.path.dirname(pkg_file),
            "install": _install_kind(),
        },
    }
    build: dict[str, str] = {}
    try:
        from . import _core

        build["core_module_version"] = str(getattr(_core, "__version__", "unknown"))
        build["core_file"] = os.path.basename(str(getattr(_core, "__file__", "unknown")))
        build.update({str(k): str(v) for k, v in _core.build_info()})
    except Exception as exc:  # a broken build is exactly what a bug report must show
        build["error"] = f"cannot load ecorecover._core: {type(exc).__name__}: {exc}"
    info["build"] = build
    info["python"] = {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }
    try:
        usable_cpus = str(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        usable_cpus = "unknown"
    info["platform"] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_simd": _cpu_simd(),
        "cpu_count": str(os.cpu_count()),
        "usable_cpus": usable_cpus,
    }
    info["environment"] = {name: os.environ.get(name, "(unset)") for name in ENV_VARS}
    info["dependencies"] = {name: _dist_version(name) for name in DEPENDENCIES}
    return info


@overload
def show_versions(*, as_dict: Literal[False] = ..., file: TextIO | None = ...) -> None: ...
@overload
def show_versions(*, as_dict: Literal[True], file: TextIO | None = ...) -> Info: ...


def show_versions(*, as_dict: bool = False, file: TextIO | None = None) -> Info | None:
    """Print the versions of ecorecover, its compiled core, Python and key dependencies.

    Paste the output into bug reports: it says which build is running (version, install kind,
    rayon threads, SIMD level, architecture, debug or release) and with which numpy, scipy,
    pandas, anndata, h5py, tqdm, rdata and matplotlib.

    Parameters
    ----------
    as_dict
        Return the information as ``{section: {field: value}}`` (all values strings) instead of
        printing it. Sections: ``ecorecover``, ``build``, ``python``, ``platform``,
        ``environment``, ``dependencies``.
    file
        Where to print (default: standard output).

    Returns
    -------
    dict or None
        The information when ``as_dict`` is true, otherwise ``None``.

    Examples
    --------
    >>> import ecorecover
    >>> ecorecover.show_versions()  # doctest: +SKIP
    """
    info = _collect()
    if as_dict:
        return info
    out = sys.stdout if file is None else file
    width = max(len(k) for section in info.values() for k in section)
    for section, fields in info.items():
        print(f"{section}:", file=out)
        for key, value in fields.items():
            print(f"  {key:<{width}} : {value}", file=out)
    return None
