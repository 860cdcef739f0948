"""Packaging: version single-sourced from Cargo, metadata, show_versions, shipped typing files.

Runs against whatever ecorecover is imported: the editable development install, or (in .ci/run)
the wheel installed into a fresh venv, where ECORECOVER_EXPECT_INSTALLED=1 also checks that the
package really comes from that venv's site-packages and not from the source tree.
"""

from __future__ import annotations

import ast
import io
import json
import os
import platform
import re
import sysconfig
from importlib import metadata, resources
from pathlib import Path

import pytest
from packaging.version import Version

import ecorecover
from ecorecover import _core
from ecorecover._versions import show_versions

REPO = Path(__file__).resolve().parents[1]


def _cargo_version() -> str:
    """[workspace.package] version of the top-level Cargo.toml (tomllib is Python >= 3.11)."""
    cargo = REPO / "Cargo.toml"
    if not cargo.is_file():
        pytest.skip(f"{cargo} not found: tests run outside the source tree")
    m = re.search(r"^\[workspace\.package\][^\[]*?^version\s*=\s*\"([^\"]+)\"", cargo.read_text(), re.M | re.S)
    assert m, f"no [workspace.package] version in {cargo}"
    return m.group(1)


# --- version -------------------------------------------------------------------------------------


def test_version_is_single_sourced_from_cargo():
    cargo = _cargo_version()
    installed = metadata.version("ecorecover")
    assert ecorecover.__version__ == installed
    # maturin turns Cargo's semver (0.2.0-alpha.1) into PEP 440 (0.2.0a1): compare normalised
    assert Version(installed) == Version(cargo), (installed, cargo)
    assert Version(_core.__version__) == Version(ecorecover.__version__)
    assert dict(_core.build_info())["core_version"] == _core.__version__


# --- distribution metadata -------------------------------------------------------------------------


def test_distribution_metadata_is_fit_for_pypi():
    md = metadata.metadata("ecorecover")
    assert md["Name"] == "ecorecover"
    assert md["Summary"]
    assert md["Requires-Python"] == ">=3.10"
    assert md["License-Expression"] == "MIT" or md["License"] == "MIT"
    assert "text/markdown" in md["Description-Content-Type"]
    assert "# ecorecover" in md.json["description"]  # the README is the long description
    extras = set(md.get_all("Provides-Extra") or [])
    assert {"test", "plot", "bench", "rds"} <= extras, extras
    urls = dict(u.split(", ", 1) for u in md.get_all("Project-URL") or [])
    assert {"Homepage", "Issues"} <= set(urls), urls
    classifiers = md.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    requires = " ".join(md.get_all("Requires-Dist") or [])
    for dep in ("numpy", "scipy", "pandas", "anndata", "h5py"):
        assert dep in requires


def test_the_build_is_abi3_for_cpython_310_and_later():
    assert Path(_core.__file__).name.startswith("_core.abi3."), _core.__file__
    wheel = metadata.distribution("ecorecover").read_text("WHEEL")
    assert wheel is not None
    tags = [ln.split(":", 1)[1].strip() for ln in wheel.splitlines() if ln.startswith("Tag:")]
    assert tags and all(t.startswith("cp310-abi3-") for t in tags), tags


def test_console_script_points_at_the_cli():
    eps = metadata.entry_points(group="console_scripts", name="ecorecover")
    assert [ep.value for ep in eps] == ["ecorecover.cli:main"]


# --- show_versions -------------------------------------------------------------------------------


def test_show_versions_is_exported_at_the_top_level():
    assert ecorecover.show_versions is show_versions
    assert "show_versions" in ecorecover.__all__


def test_show_versions_prints_package_build_python_and_dependencies(capsys):
    import numpy

    result = show_versions()
    assert result is None
    out = capsys.readouterr().out
    build = dict(_core.build_info())
    for needle in (
        ecorecover.__version__,
        "rayon_threads",
        "simd",
        build["simd"],
        build["target_arch"],
        "debug_assertions",
        platform.python_version(),
        numpy.__version__,
        "anndata",
        "h5py",
        "tqdm",
    ):
        assert needle in out, f"{needle!r} not in show_versions() output:\n{out}"


def test_show_versions_as_dict_matches_the_core_and_prints_nothing(capsys):
    info = show_versions(as_dict=True)
    assert capsys.readouterr().out == ""
    assert {"ecorecover", "build", "python", "platform", "dependencies"} <= set(info)
    assert info["ecorecover"]["version"] == ecorecover.__version__
    build = dict(_core.build_info())
    for key in ("rayon_threads", "simd", "target_arch", "debug_assertions"):
        assert info["build"][key] == build[key]
    assert int(info["build"]["rayon_threads"]) >= 1
    assert info["build"]["simd"]
    assert info["python"]["version"] == platform.python_version()
    assert info["dependencies"]["numpy"] == metadata.version("numpy")
    assert all(isinstance(v, str) for section in info.values() for v in section.values())
    # file= prints the same report elsewhere
    buf = io.StringIO()
    show_versions(file=buf)
    assert info["build"]["simd"] in buf.getvalue()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            return set(next((ln.split(":", 1)[1].split() for ln in fh if ln.startswith("flags")), []))
    except OSError:
        return set()


def test_simd_level_is_chosen_at_run_time_from_the_cpu():
    # wheels are built for baseline x86-64 (no target-cpu=native): AVX2 must come from run-time
    # detection, so the reported level follows this CPU, not the build machine's flags.
    flags = _cpu_flags()
    if platform.machine() != "x86_64" or not flags:
        pytest.skip("x86-64 Linux only (reads /proc/cpuinfo)")
    expected = "avx2" if "avx2" in flags else "sse2"
    assert dict(_core.build_info())["simd"] == expected


def test_the_release_build_is_not_a_debug_build():
    if os.environ.get("ECORECOVER_EXPECT_INSTALLED") != "1":
        pytest.skip("only the wheel is certainly a release build (set ECORECOVER_EXPECT_INSTALLED=1)")
    assert dict(_core.build_info())["debug_assertions"] == "false"


# --- typing files --------------------------------------------------------------------------------


def test_py_typed_is_shipped():
    assert resources.files("ecorecover").joinpath("py.typed").is_file()


def _stub_names(tree: ast.Module) -> tuple[set[str], dict[str, set[str]]]:
    names: set[str] = set()
    methods: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            methods[node.name] = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names, methods


def _stub_functions(text: str) -> set[str]:
    return {n.name for n in ast.parse(text).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_core_stub_covers_every_public_name_of_the_compiled_core():
    stub = resources.files("ecorecover").joinpath("_core.pyi")
    assert stub.is_file(), "ecorecover/_core.pyi is not shipped"
    names, methods = _stub_names(ast.parse(stub.read_text(encoding="utf-8")))
    public = {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}
    missing = sorted(public - names)
    assert not missing, f"public names of ecorecover._core missing from _core.pyi: {missing}"
    # and the stub promises nothing the binary lacks (type aliases are stub-only assignments)
    phantom = sorted(n for n in set(methods) | _stub_functions(stub.read_text(encoding="utf-8")) if not hasattr(_core, n))
    assert not phantom, f"_core.pyi declares names that ecorecover._core does not have: {phantom}"
    for cls, stubbed in methods.items():
        runtime = getattr(_core, cls, None)
        if isinstance(runtime, type):
            absent = sorted({m for m in vars(runtime) if not m.startswith("_")} - stubbed)
            assert not absent, f"methods of _core.{cls} missing from _core.pyi: {absent}"


# --- installed, not the source tree -----------------------------------------------------------------


def test_installed_package_comes_from_site_packages_not_the_source_tree():
    if os.environ.get("ECORECOVER_EXPECT_INSTALLED") != "1":
        pytest.skip("set ECORECOVER_EXPECT_INSTALLED=1 when testing an installed wheel (.ci/run does)")
    pkg = Path(ecorecover.__file__).resolve().parent
    site = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    assert pkg.parent in site, f"ecorecover imported from {pkg}, not from site-packages {sorted(map(str, site))}"
    assert Path(_core.__file__).resolve().parent == pkg
    assert REPO not in pkg.parents, f"ecorecover imported from the source tree {pkg}"
    direct_url = json.loads(metadata.distribution("ecorecover").read_text("direct_url.json") or "{}")
    assert not direct_url.get("dir_info", {}).get("editable", False), direct_url
    files = {str(f) for f in metadata.distribution("ecorecover").files or []}
    assert "ecorecover/_core.abi3.so" in files and "ecorecover/py.typed" in files
