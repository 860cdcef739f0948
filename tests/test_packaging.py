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
import sys
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
    expected = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse2"
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


# --- what the README and docs promise --------------------------------------------------------------

README = REPO / "README.md"
DOC_FILES = [README, *sorted((REPO / "docs").glob("*.md"))]


def _readme() -> str:
    if not README.is_file():
        pytest.skip(f"{README} not found: tests run outside the source tree")
    return README.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_readme_quick_start_runs_verbatim(tmp_path, monkeypatch):
    """README's Quick start is executed as written, in an empty directory."""
    block = re.search(r"```python\n(.*?)```", _section(_readme(), "## Quick start"), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block, "README.md (Quick start)", "exec"), ns)  # noqa: S102 - our own README
    table, query = ns["table"], ns["query"]
    assert (tmp_path / "model.h5").is_file()
    assert list(table.columns[:4]) == ["CellType", "InitSE", "SE", "PredScore"] and len(table) == query.n_obs
    assert len(ns["ensemble"].runs) == 50
    truth = query.obs["SE"].astype(str).to_numpy()
    has_se = truth != "nonSE"
    assert (table["SE"].to_numpy()[has_se] == truth[has_se]).mean() > 0.8  # the planted SEs are recovered


def test_no_install_instruction_assumes_a_package_index():
    """ecorecover is not on any package index yet: no doc may tell users to `pip install
    ecorecover` (or an extra of it) by name, unless saying that it does not work yet."""
    _readme()
    by_name = re.compile(r"pip3? install\s+(?:-\S+\s+)*['\"]?ecorecover(?:\[[^\]]*\])?(?![\w./-])")
    bad = []
    for f in DOC_FILES:
        text = f.read_text(encoding="utf-8")
        for m in by_name.finditer(text):
            if "does not work" not in text[m.end():m.end() + 40]:
                bad.append(f"{f.name}: ...{text[max(0, m.start() - 30):m.end() + 30]!r}")
    assert not bad, bad
    install = _section(_readme(), "## Installation and bug reports")
    assert "not yet published" in install and "scripts/build_wheel.sh" in install and "pip install ." in install


def test_relative_links_in_the_docs_resolve():
    _readme()
    broken = []
    for f in DOC_FILES:
        text = f.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            dest = (f.parent / path).resolve() if path else f
            if not dest.exists():
                broken.append(f"{f.relative_to(REPO)}: {target}")
            elif anchor and dest.suffix == ".md":
                slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                         for h in re.findall(r"^#+ (.*)$", dest.read_text(encoding="utf-8"), re.M)}
                if anchor not in slugs:
                    broken.append(f"{f.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, broken


def _metadata_requirements() -> list[str]:
    """Requires-Dist of the installed distribution; of pyproject.toml in a source tree whose
    metadata may be older than the file (an editable install is not rebuilt for extras)."""
    pyproject = REPO / "pyproject.toml"
    if os.environ.get("ECORECOVER_EXPECT_INSTALLED") == "1" or not pyproject.is_file():
        return list(metadata.requires("ecorecover") or [])
    if sys.version_info < (3, 11):  # no tomllib: the installed metadata (pip install -e '.[test]' wrote it)
        return list(metadata.requires("ecorecover") or [])
    import tomllib
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra, deps in project["optional-dependencies"].items():
        reqs += [f"{d}; extra == \"{extra}\"" if ";" not in d else f"{d} and extra == \"{extra}\"" for d in deps]
    return reqs


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12", "3.13"])
def test_extras_bring_what_the_tests_need_on_every_supported_python(python):
    """[test] and [dask] bring zarr (the Dask tests read zarr stores; on Python 3.10 anndata
    0.11 does not depend on it), [test] and [rds] bring rdata, [plot] matplotlib."""
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in _metadata_requirements()]

    def brought(extra: str) -> set[str]:
        env = {"python_version": python, "python_full_version": f"{python}.0", "extra": extra}
        return {r.name.lower() for r in reqs if r.marker is None or r.marker.evaluate(env)}

    assert {"zarr", "dask", "rdata", "matplotlib", "pytest", "hypothesis"} <= brought("test"), brought("test")
    assert {"zarr", "dask"} <= brought("dask")
    assert "rdata" in brought("rds") and "matplotlib" in brought("plot")
    core = brought("")
    assert {"numpy", "scipy", "pandas", "anndata", "h5py"} <= core and "zarr" not in core


# --- scripts/ci_checks.py: the CI's report checks ---------------------------------------------------


def _junit(path: Path, cases: dict[str, str | None]) -> Path:
    """A JUnit report: test name -> None (passed) or a skip message."""
    rows = []
    for name, skip in cases.items():
        body = "" if skip is None else f'<skipped type="pytest.skip" message="{skip}">{skip}</skipped>'
        rows.append(f'<testcase classname="tests.test_x" name="{name}" time="0.1">{body}</testcase>')
    path.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest">' + "".join(rows)
                    + "</testsuite></testsuites>")
    return path


def _ci_checks(*args: str, env: dict[str, str] | None = None):
    import subprocess
    import sys

    script = REPO / "scripts" / "ci_checks.py"
    if not script.is_file():
        pytest.skip(f"{script} not found: tests run outside the source tree")
    full = {k: v for k, v in os.environ.items() if k != "ECORECOVER_PUBLISHED_MODELS"}
    full.update(env or {})
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=full, timeout=60)


def test_ci_fails_when_published_model_tests_skip_although_the_models_are_there(tmp_path):
    skipped = "published MERSCOPE models not found at /x (non-commercial licence: not shipped)"
    report = _junit(tmp_path / "r.xml", {"test_a": None, "test_parity": skipped, "test_other": "needs pyarrow"})
    models = tmp_path / "models"
    models.mkdir()
    res = _ci_checks("published", "dev", str(report), env={"ECORECOVER_PUBLISHED_MODELS": str(models)})
    assert res.returncode == 1 and "tests.test_x::test_parity" in res.stderr, res
    assert _ci_checks("published", "dev", str(report)).returncode == 0  # no models here: skips allowed
    res = _ci_checks("published", "dev", str(_junit(tmp_path / "ok.xml", {"test_a": None, "test_parity": None})),
                     env={"ECORECOVER_PUBLISHED_MODELS": str(models)})
    assert res.returncode == 0, res


def test_ci_coverage_fails_when_the_wheel_skips_a_test_that_ran(tmp_path):
    """Every test that ran against the development build must run against each installed wheel:
    no skip reason is accepted (the tests of .rds files build them by hand, tests/rds_bytes.py, so
    rdata 0.11 on Python 3.10 runs them too)."""
    dev = _junit(tmp_path / "dev.xml", {"test_a": None, "test_rds": None, "test_b": None})
    rdata_skip = "module &apos;rdata&apos; has __version__ &apos;0.11.2&apos;, required is: &apos;1.0&apos;"
    whl = _junit(tmp_path / "whl.xml", {"test_a": None, "test_rds": rdata_skip, "test_b": None})
    res = _ci_checks("coverage", str(dev), str(whl))
    assert res.returncode == 1 and "tests.test_x::test_rds: skipped module 'rdata'" in res.stdout, res
    missing = _junit(tmp_path / "missing.xml", {"test_a": None, "test_b": None})
    res = _ci_checks("coverage", str(dev), str(missing))
    assert res.returncode == 1 and "test_rds: absent" in res.stdout, res
    same = _junit(tmp_path / "same.xml", {"test_a": None, "test_rds": None, "test_b": None, "test_new": None})
    res = _ci_checks("coverage", str(dev), str(same))
    assert res.returncode == 0 and "ran only against the installed wheel: tests.test_x::test_new" in res.stdout, res
    assert _ci_checks("coverage", str(dev), str(whl), "--allow-skip", "rdata").returncode == 2  # no such option
    run_file = (REPO / ".ci" / "run").read_text()
    assert "checks coverage" in run_file and "--allow-skip" not in run_file and "RECORDED_SKIPS" not in run_file
