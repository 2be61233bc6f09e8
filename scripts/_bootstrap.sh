# Sourced by scripts/quickstart and scripts/test: makes .venv with memnas installed, once.
# Idempotent: a stamp keyed on pyproject.toml and constraints.txt skips pip when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "memnas: creating .venv" >&2
  "$PY" -m venv .venv
fi
STAMP=".venv/.memnas-installed"
WANT="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "memnas: installing dependencies into .venv (torch pinned by constraints.txt)" >&2
  LOG=".venv/install.log"
  {
    .venv/bin/python -m pip install --upgrade pip &&
    # torch first, from the pin, so nothing pulls an unpinned CUDA build.
    .venv/bin/python -m pip install -c constraints.txt torch &&
    .venv/bin/python -m pip install -c constraints.txt -e ".[dev]" &&
    .venv/bin/python -c "import memnas, torch, ray, pyglove, streamlit, optuna"
  } > "$LOG" 2>&1 || { tail -30 "$LOG" >&2; echo "memnas: install failed, full log in $LOG" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
