#!/usr/bin/env bash
# hirestream benchmarks: one command, its own set-up, its own stack.
#
#   bench/run.sh            the full run (about 16 minutes on 2 cores with FerretDB)
#   bench/run.sh --quick    small sizes, about 5 minutes: checks everything works end to end
#   bench/run.sh --help     every option (--only, sizes such as --drain-events)
#
# Writes bench/results/<date>.json and <date>.png (see bench/README.md). Starts its own local
# stack in .stack/bench/stack on free ports: never the developer's running stack.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A virtualenv of its own: `./dev.sh` runs an exact `uv sync`, which drops the bench group
# from .venv, and must not pull matplotlib from under a running benchmark.
VENV="$ROOT/.stack/bench/venv"

die() { echo "error: $*" >&2; exit 2; }

uv_bin() {
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  # The same private uv that ./dev.sh installs from PyPI when the machine has none.
  if [[ ! -x "$ROOT/.stack/tools/bin/uv" ]]; then
    command -v python3 >/dev/null 2>&1 || die "python3 not found — install Python 3.11"
    mkdir -p "$ROOT/.stack"
    python3 -m venv "$ROOT/.stack/tools" >/dev/null || die "python3 -m venv failed — install python3-venv"
    "$ROOT/.stack/tools/bin/pip" install --quiet --disable-pip-version-check "uv==0.13.8" \
      || die "could not install uv from PyPI"
  fi
  echo "$ROOT/.stack/tools/bin/uv"
}

mkdir -p "$ROOT/.stack/bench"
UV_PROJECT_ENVIRONMENT="$VENV" "$(uv_bin)" sync --frozen --quiet --python 3.11 --group bench \
  || die "uv sync --group bench failed (is Python 3.11 installed?)"
# Kafka jars and the database server (FerretDB unless mongod is on PATH), built once and cached.
bash "$ROOT/deploy/local/stack.sh" build
cd "$ROOT"
# The stack's SMTP catcher runs on aiosmtpd, which this venv has (.venv may not exist yet).
export STACK_PYTHON="${STACK_PYTHON:-$VENV/bin/python}"
exec "$VENV/bin/python" -m bench "$@"
