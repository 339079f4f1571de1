#!/usr/bin/env bash
# hirestream developer commands. Each does its own set-up and is cheap to run again.
#
#   ./dev.sh up       Kafka, the MongoDB-protocol server, the mail catcher and the three
#                     services, in the background; returns when all three answer /readyz.
#   ./dev.sh test     ruff, mypy, then every test (unit, integration, e2e, fault, security,
#                     deploy) on real servers; arguments go to pytest.
#   ./dev.sh down     stop the services and the stack.
#   ./dev.sh status   what is running.
#   ./dev.sh token    mint a development token: ./dev.sh token --role employer --org acme
#   ./dev.sh demo     publish a handful of realistic postings to the running system
#   ./dev.sh kafka-client [PRINCIPAL]
#                     a Kafka principal's client properties (default operator), for
#                     kcat -F or a Kafka tool's --consumer.config / --command-config
#   ./dev.sh hirestream ARGS
#                     the operator CLI against the running stack, as operator:
#                     ./dev.sh hirestream dlq list, outbox status, lag, --help
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$ROOT/.stack"
RUN="$STATE/run"                         # the same STACK_DIR deploy/local/stack.sh defaults to
source "$ROOT/deploy/versions.env"       # UV_VERSION, like every pinned version
SERVICES=(postings applications notifications)
declare -A PORTS=([postings]=8001 [applications]=8002 [notifications]=8003)

die() { echo "error: $*" >&2; exit 2; }

# uv from PyPI into a private virtualenv when the machine has none: no download script needed.
uv_bin() {
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  local tools="$STATE/tools"
  if [[ ! -x "$tools/bin/uv" ]]; then
    command -v python3 >/dev/null 2>&1 || die "python3 not found — install Python 3.11 (Debian: apt-get install python3 python3-venv)"
    mkdir -p "$STATE"
    python3 -m venv "$tools" >/dev/null || die "python3 -m venv failed — install python3-venv"
    "$tools/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION" \
      || die "could not install uv $UV_VERSION from PyPI"
  fi
  echo "$tools/bin/uv"
}

sync_venv() {
  local uv; uv="$(uv_bin)"
  "$uv" sync --frozen --quiet --python 3.11 || die "uv sync failed (is Python 3.11 installed?)"
  # The files /docs and /asyncapi serve: built from pinned npm packages, once per lock file.
  bash "$ROOT/shared/web-assets/build.sh"
}

jwt_secret() {
  # A random development secret, made once and kept out of the repository.
  if [[ -n "${JWT_SECRET:-}" ]]; then echo "$JWT_SECRET"; return; fi
  mkdir -p "$RUN"
  [[ -s "$RUN/jwt_secret" ]] || (umask 077; "$ROOT/.venv/bin/python" -c \
    'import secrets; print(secrets.token_urlsafe(48))' > "$RUN/jwt_secret")
  cat "$RUN/jwt_secret"
}

service_env() {
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${KAFKA_PORT:-9092}"
  export MONGODB_URL="mongodb://127.0.0.1:${MONGO_PORT:-27017}"
  export SMTP_HOST=127.0.0.1 SMTP_PORT="${SMTP_PORT:-1025}"
  export JWT_SECRET; JWT_SECRET="$(jwt_secret)"
  export LOG_FORMAT="${LOG_FORMAT:-json}"
  export ENVIRONMENT="${ENVIRONMENT:-development}"
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

ready() { curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null; }

# One line of what stack.sh printed (`KEY=value`), or nothing.
endpoint() { sed -n "s/^$1=//p" <<<"$ENDPOINTS" | head -n 1; }

# Each service authenticates to Kafka as its own principal, named after it.
export_kafka_credentials() {
  local name=$1 password
  password="$(endpoint "KAFKA_SASL_PASSWORD_${name^^}")"
  [[ -n $password ]] || return 0  # an open (PLAINTEXT) local Kafka
  export KAFKA_SECURITY_PROTOCOL KAFKA_SASL_MECHANISM KAFKA_SASL_USERNAME="$name"
  KAFKA_SECURITY_PROTOCOL="$(endpoint KAFKA_SECURITY_PROTOCOL)"
  KAFKA_SASL_MECHANISM="$(endpoint KAFKA_SASL_MECHANISM)"
  export KAFKA_SASL_PASSWORD="$password"
}

cmd_up() {
  sync_venv
  ENDPOINTS="$(bash "$ROOT/deploy/local/stack.sh" start)"
  service_env
  mkdir -p "$RUN/logs"
  for name in "${SERVICES[@]}"; do
    local pidfile="$RUN/$name.pid"
    if pid_alive "$pidfile"; then continue; fi
    (
      export_kafka_credentials "$name"
      PORT="${PORTS[$name]}" MONGODB_DATABASE="$name" \
        setsid nohup "$ROOT/.venv/bin/python" -m "hirestream.$name" \
        >>"$RUN/logs/$name.log" 2>&1 < /dev/null &
      echo $! > "$pidfile"
    )
  done
  local deadline=$((SECONDS + 120))
  for name in "${SERVICES[@]}"; do
    until ready "${PORTS[$name]}"; do
      pid_alive "$RUN/$name.pid" || die "$name exited — see $RUN/logs/$name.log"
      (( SECONDS < deadline )) || die "$name not ready after 120 s — see $RUN/logs/$name.log"
      sleep 0.5
    done
    echo "$name ready on http://127.0.0.1:${PORTS[$name]} (logs: .stack/run/logs/$name.log)"
  done
  echo "mint a token: ./dev.sh token --role employer --org acme"
}

cmd_down() {
  for name in "${SERVICES[@]}"; do
    local pidfile="$RUN/$name.pid"
    if pid_alive "$pidfile"; then
      kill -TERM "$(cat "$pidfile")"
      for _ in $(seq 1 60); do pid_alive "$pidfile" || break; sleep 0.5; done
      pid_alive "$pidfile" && kill -KILL "$(cat "$pidfile")"
    fi
    rm -f "$pidfile"
  done
  bash "$ROOT/deploy/local/stack.sh" stop
}

cmd_status() {
  local ok=0
  for name in "${SERVICES[@]}"; do
    if ready "${PORTS[$name]}"; then echo "$name: ready on ${PORTS[$name]}"
    else echo "$name: down"; ok=1; fi
  done
  bash "$ROOT/deploy/local/stack.sh" status || ok=1
  return $ok
}

# Lint and types first: a style or type error fails in seconds, not after the suite.
cmd_lint() {
  cd "$ROOT"
  "$ROOT/.venv/bin/ruff" check . || die "ruff check found problems (see above)"
  "$ROOT/.venv/bin/ruff" format --check . || die "ruff format would change files (see above)"
  "$ROOT/.venv/bin/mypy" || die "mypy found type errors (see above)"
}

cmd_test() {
  sync_venv
  cmd_lint
  # Build the jars and the database server before pytest, so a missing Java, Maven or Go is
  # one clear line here rather than a fixture error; the tests start their own stack.
  bash "$ROOT/deploy/local/stack.sh" build
  bash "$ROOT/deploy/tools.sh"           # the tools tests/deploy runs (see its header)
  cd "$ROOT"
  exec "$ROOT/.venv/bin/python" -m pytest "$@"
}

cmd_token() {
  sync_venv
  JWT_SECRET="$(jwt_secret)" exec "$ROOT/.venv/bin/python" -m hirestream.shared.devtoken "$@"
}

cmd_demo() {
  sync_venv
  JWT_SECRET="$(jwt_secret)" exec "$ROOT/.venv/bin/python" -m hirestream.postings.demo "$@"
}

# The operator CLI with the running stack's endpoints and operator's Kafka login, exported
# rather than passed as arguments so that the password is not in the process list.
cmd_cli() {
  sync_venv
  local key value
  while IFS='=' read -r key value; do
    case "$key" in
      KAFKA_BOOTSTRAP_SERVERS | MONGODB_URL | KAFKA_SECURITY_PROTOCOL | KAFKA_SASL_MECHANISM)
        export "$key=$value" ;;
      KAFKA_SASL_USERNAME_OPERATOR) export KAFKA_SASL_USERNAME="$value" ;;
      KAFKA_SASL_PASSWORD_OPERATOR) export KAFKA_SASL_PASSWORD="$value" ;;
    esac
  done < <(bash "$ROOT/deploy/local/stack.sh" env)
  exec "$ROOT/.venv/bin/hirestream" "$@"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  test) shift; cmd_test "$@" ;;
  token) shift; cmd_token "$@" ;;
  demo) shift; cmd_demo "$@" ;;
  kafka-client) shift; exec bash "$ROOT/deploy/local/stack.sh" kafka-client "$@" ;;
  hirestream) shift; cmd_cli "$@" ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
