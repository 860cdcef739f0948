#!/usr/bin/env bash
# Build ecorecover's release artefacts into dist/ and check them:
#   - an abi3 wheel (CPython >= 3.10, x86_64 Linux) linked against an old glibc with zig, so it
#     is manylinux2014 compliant without Docker; release profile (fat LTO, one codegen unit),
#     baseline x86-64 code (never target-cpu=native), symbols stripped;
#   - an sdist holding what a source build needs (rust/ crates, Cargo.lock, python/, LICENSE,
#     README) and not the test fixtures.
# Checks: `auditwheel show` (the manylinux tag is printed), the wheel's and the sdist's contents,
# `cargo check --locked` inside the unpacked sdist, `twine check --strict` (PyPI metadata).
#
# Usage: scripts/build_wheel.sh [--no-sdist]
# The build tools (scripts/build-requirements.txt: maturin, ziglang, auditwheel, twine) go into
# their own virtual environment, target/build-tools, never into the Python you develop with.
# Environment: ECORECOVER_DIST (output directory, default dist), ECORECOVER_MANYLINUX (default
# manylinux2014), ECORECOVER_BUILD_TOOLS (tools venv), CARGO_TARGET_DIR (default target/wheel,
# kept apart from the development build's target/ so the two do not rebuild each other).
set -euo pipefail

die() { echo "build_wheel.sh: error: $*" >&2; exit 1; }

sdist=1
for arg in "$@"; do
    case "$arg" in
        --no-sdist) sdist=0 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (see --help)" ;;
    esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${ECORECOVER_DIST:-dist}"
compat="${ECORECOVER_MANYLINUX:-manylinux2014}"
tools="${ECORECOVER_BUILD_TOOLS:-$root/target/build-tools}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/wheel}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || die "this script builds x86_64 Linux wheels; this is $(uname -s)-$(uname -m)"

# A wheel must run on any x86-64 CPU: refuse flags that tune the code to the build machine.
for flags in "${RUSTFLAGS:-}" "${CARGO_ENCODED_RUSTFLAGS:-}" "${CARGO_BUILD_RUSTFLAGS:-}"; do
    case "$flags" in *target-cpu* | *target-feature*) die "RUSTFLAGS set a target CPU/feature ('$flags'): unset it, wheels must run on any x86-64 CPU" ;; esac
done
for cfg in .cargo/config.toml .cargo/config "${CARGO_HOME:-$HOME/.cargo}/config.toml" "${CARGO_HOME:-$HOME/.cargo}/config"; do
    if [ -f "$cfg" ] && grep -Eq 'target-cpu|target-feature' "$cfg"; then
        die "$cfg sets a target CPU/feature: wheels must run on any x86-64 CPU"
    fi
done

# --- build tools, in their own venv (reinstalled when the pins change) ---------------------------
req="$root/scripts/build-requirements.txt"
if ! cmp -s "$req" "$tools/build-requirements.txt" 2>/dev/null || [ ! -x "$tools/bin/maturin" ]; then
    echo "-- installing build tools into $tools"
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install -q -r "$req"
    cp "$req" "$tools/build-requirements.txt"
fi
# maturin finds zig through `python3 -m ziglang`: put the tools venv first.
export PATH="$tools/bin:$PATH"
echo "-- $(maturin --version), zig $(python3 -m ziglang version), $(cargo --version)"

# --- build --------------------------------------------------------------------------------------
mkdir -p "$out"
rm -f "$out"/ecorecover-*.whl "$out"/ecorecover-*.tar.gz
maturin build --release --locked --strip --zig --compatibility "$compat" --out "$out"
if [ "$sdist" = 1 ]; then
    maturin sdist --out "$out"
fi

shopt -s nullglob
wheels=("$out"/ecorecover-*.whl)
[ "${#wheels[@]}" = 1 ] || die "expected one wheel in $out, found ${#wheels[@]}"
wheel="${wheels[0]}"

# --- check the wheel ----------------------------------------------------------------------------
case "$(basename "$wheel")" in
    *-cp310-abi3-*manylinux*_x86_64.whl) ;;
    *) die "$(basename "$wheel") is not a cp310-abi3 manylinux x86_64 wheel" ;;
esac
audit="$(auditwheel show "$wheel")"
echo "$audit"
tag="$(printf '%s\n' "$audit" | tr -d '\n' | grep -o '"manylinux_[0-9]*_[0-9]*_x86_64"' | head -n1 | tr -d '"')"
[ -n "$tag" ] || die "auditwheel reports no manylinux tag for $wheel"
case "$(basename "$wheel")" in *"$tag"*) ;; *) die "auditwheel's tag $tag is not among the wheel's tags" ;; esac
listing="$(python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel")"
for f in ecorecover/__init__.py ecorecover/_core.abi3.so ecorecover/py.typed; do
    grep -qx "$f" <<<"$listing" || die "$f missing from the wheel"
done
if grep -Eq '__pycache__|\.pyc$|^tests/|\.so\.[0-9]' <<<"$listing"; then die "the wheel contains caches, tests or bundled libraries"; fi

# --- check the sdist ----------------------------------------------------------------------------
if [ "$sdist" = 1 ]; then
    sdists=("$out"/ecorecover-*.tar.gz)
    [ "${#sdists[@]}" = 1 ] || die "expected one sdist in $out, found ${#sdists[@]}"
    sd="${sdists[0]}"
    members="$(tar tzf "$sd")"
    top="$(head -n1 <<<"$members" | cut -d/ -f1)"
    for f in PKG-INFO pyproject.toml Cargo.toml Cargo.lock LICENSE README.md rust/core/Cargo.toml \
             rust/core/src/lib.rs rust/py/Cargo.toml rust/py/src/lib.rs python/ecorecover/__init__.py \
             python/ecorecover/py.typed; do
        grep -qx "$top/$f" <<<"$members" || die "$f missing from the sdist"
    done
    if grep -Eq "^$top/(tests/fixtures|target|dist|benches/data)/|\.so$|__pycache__" <<<"$members"; then
        die "the sdist contains fixtures, build output or caches:
$(grep -E "^$top/(tests/fixtures|target|dist|benches/data)/|\.so$|__pycache__" <<<"$members" | head)"
    fi
    # Everything the Rust build needs is in it: compile-check the unpacked sdist, offline.
    unpacked="$(mktemp -d)"
    trap 'rm -rf "$unpacked"' EXIT
    tar xzf "$sd" -C "$unpacked"
    (cd "$unpacked/$top" && cargo check --locked --offline --quiet --workspace) \
        || die "the unpacked sdist does not compile (cargo check --locked --offline)"
    echo "-- sdist: $(wc -l <<<"$members") files, compiles (cargo check --locked --offline)"
fi

twine check --strict "$out"/ecorecover-*

size() { python3 -c 'import os, sys; n = os.path.getsize(sys.argv[1]); print(f"{n} bytes ({n / 1024**2:.2f} MiB)")' "$1"; }
echo "== built $(basename "$wheel"): $(size "$wheel"); auditwheel: $tag"
if [ "$sdist" = 1 ]; then echo "== built $(basename "$sd"): $(size "$sd")"; fi
