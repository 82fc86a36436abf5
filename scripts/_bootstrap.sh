# Sourced by scripts/demo and scripts/test: make .venv current, cheaply when it already is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3 python; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then PY="$c"; break; fi
  done
fi
[ -n "$PY" ] || { echo "vidcam: error: Python >= 3.11 not found (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
VENV="$ROOT/.venv"
STAMP="$VENV/.vidcam-stamp"
WANT="$(cat pyproject.toml scripts/_bootstrap.sh | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setting up $VENV (first run: downloads TensorFlow, a few minutes) ..." >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e ".[test,cluster]" >&2
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
