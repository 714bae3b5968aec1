#!/usr/bin/env bash
# Set up a virtual environment in .venv with genex and its test/bench extras.
# Idempotent: re-running only installs what is missing. Used by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

# MuJoCo renders headless through EGL (Mesa's software rasterizer on a machine without a GPU).
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing EGL/Mesa for headless rendering" >&2
    apt-get update -qq && apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
  else
    echo "setup: libEGL not found; install libegl1 + libgl1-mesa-dri (or set MUJOCO_GL=osmesa with libosmesa6)" >&2
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
stamp="$VENV/.genex-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # The CPU build of torch first: a plain `torch` requirement would pull a multi-GB CUDA build.
  # The +cpu local version exists only as a wheel on this machine (pip's find-links), never on PyPI,
  # so this line cannot download a CUDA build; torch's own small dependencies come from PyPI.
  if ! $PIP install "torch==2.13.0+cpu"; then
    echo "setup: WARNING: no local CPU wheel torch==2.13.0+cpu; pip will now pick torch from the index," >&2
    echo "setup: which on Linux x86_64 is a multi-GB CUDA build. Install a CPU torch first to avoid it." >&2
  fi
  $PIP install -e ".[dev,bench,hf,serve,rl]"
  touch "$stamp"
fi
