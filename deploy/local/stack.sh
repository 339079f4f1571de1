#!/usr/bin/env bash
# Docker-free local stack for hirestream: Apache Kafka (KRaft, combined
# broker+controller; one node, or three with KAFKA_NODES=3), a MongoDB-protocol
# server (mongod if on PATH, otherwise FerretDB v1 on SQLite) and an SMTP
# catcher, run as plain background processes.
#
#   stack.sh build     fetch/build what is missing (cheap and silent when done)
#   stack.sh start     build if needed, start what is not running, wait until
#                      every server answers, print the endpoints on stdout
#   stack.sh stop      SIGTERM, wait, SIGKILL; idempotent
#   stack.sh status    one line per server; exit 0 only if all are up
#   stack.sh env       print the endpoints (same lines as start)
#   stack.sh kafka-class CLASS [ARGS...]
#                      run a Kafka tool class from the cached jars, e.g.
#                      org.apache.kafka.tools.ConsoleProducer; with
#                      KAFKA_AUTH=scram give it --command-config (or
#                      --producer.config ...) "$STACK_DIR/kafka-credentials/operator.properties"
#   stack.sh kafka-client [--java] [PRINCIPAL]
#                      print PRINCIPAL's (default operator) Kafka client
#                      properties: security.protocol, sasl.mechanism,
#                      sasl.username, sasl.password (librdkafka names);
#                      --java adds sasl.jaas.config, which Java tools need and
#                      kcat -F rejects. With KAFKA_AUTH=none only
#                      security.protocol=PLAINTEXT.
#
# KAFKA_AUTH=scram secures Kafka: SASL/SCRAM-SHA-512 for clients, ACLs from
# kafka/acls.tsv, a principal per service and the super user operator. start
# and env then print, after the four endpoint lines:
#   KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT
#   KAFKA_SASL_MECHANISM=SCRAM-SHA-512
#   KAFKA_SASL_USERNAME_<NAME>=<name>     a pair per principal, NAME upper-cased:
#   KAFKA_SASL_PASSWORD_<NAME>=<password> OPERATOR, POSTINGS, APPLICATIONS, ...
# A service process gets the first two and its pair without the _<NAME>
# suffix (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD).
#
# See README.md beside this file for the environment variables.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
# The build cache is shared by every stack (tests use their own STACK_DIR but
# must not download Kafka again), so it never follows STACK_DIR.
CACHE_DIR="$REPO_DIR/.stack/cache"

HOST=127.0.0.1
KAFKA_NODES=${KAFKA_NODES:-1}
KAFKA_PORT=${KAFKA_PORT:-9092}
# With several nodes the brokers take KAFKA_PORT, +1, +2, so the controllers
# default to the ports right after those instead of 9093.
if [[ -z ${KAFKA_CONTROLLER_PORT:-} ]]; then
    if [[ $KAFKA_NODES == 1 ]]; then
        KAFKA_CONTROLLER_PORT=9093
    elif [[ $KAFKA_PORT =~ ^[0-9]+$ && $KAFKA_NODES =~ ^[0-9]+$ ]]; then
        KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + KAFKA_NODES))
    fi
fi
MONGO_PORT=${MONGO_PORT:-27017}
SMTP_PORT=${SMTP_PORT:-1025}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}
STACK_START_TIMEOUT=${STACK_START_TIMEOUT:-90}
STACK_STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-20}
STACK_MONGO=${STACK_MONGO:-auto}   # auto | mongod | ferretdb
# none: PLAINTEXT, anyone may do anything. scram: SASL/SCRAM-SHA-512 and ACLs,
# as in production. The default is chosen on this line.
KAFKA_AUTH=${KAFKA_AUTH:-scram}

KAFKA_LIBS="$CACHE_DIR/kafka/libs"
TOOL_BATCH_CLASSES="$CACHE_DIR/kafka/tool-batch"
KAFKA_ACLS_FILE="$SCRIPT_DIR/kafka/acls.tsv"
KAFKA_SUPER_USER=operator
# The nodes' own identities with KAFKA_AUTH=scram: a SCRAM user between
# brokers, and a static PLAIN user on the controller listener (a KRaft
# controller cannot check SCRAM: those credentials live in the metadata it serves).
KAFKA_BROKER_USER=broker
KAFKA_CONTROLLER_USER=controller
FERRETDB_BIN="$CACHE_DIR/bin/ferretdb-lite"
# Every name a server of any stack layout can have: stop cleans up all of
# them, whatever KAFKA_NODES says now.
ALL_SERVICES=(kafka kafka-1 kafka-2 kafka-3 mongo smtp)

# ---------------------------------------------------------------- messages

note() { echo "stack: $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }
# Missing prerequisites get their own exit code so callers can tell
# "this machine lacks a tool" from "a server failed".
die_prereq() { echo "error: $*" >&2; exit 2; }

# ---------------------------------------------------------------- settings

# STACK_DIR may be relative or not exist yet; pid files and server arguments
# need one absolute spelling so process matching (running_pid) is exact.
resolve_stack_dir() {
    local dir=${STACK_DIR:-$REPO_DIR/.stack/run}
    [[ $dir == /* ]] || dir="$PWD/$dir"
    mkdir -p "$dir"
    STACK_DIR=$(cd -- "$dir" && pwd -P)
    LOG_DIR="$STACK_DIR/logs"
    KAFKA_CRED_DIR="$STACK_DIR/kafka-credentials"
}

check_settings() {
    [[ $KAFKA_NODES == 1 || $KAFKA_NODES == 3 ]] || die "KAFKA_NODES must be 1 or 3, got '$KAFKA_NODES'"
    [[ $KAFKA_AUTH == none || $KAFKA_AUTH == scram ]] || die "KAFKA_AUTH must be none or scram, got '$KAFKA_AUTH'"
    local var
    for var in KAFKA_PORT KAFKA_CONTROLLER_PORT MONGO_PORT SMTP_PORT; do
        [[ ${!var} =~ ^[0-9]+$ ]] && ((${!var} > 0 && ${!var} + KAFKA_NODES < 65536)) ||
            die "$var must be a TCP port number, got '${!var}'"
    done
    # Catch overlapping ranges before a server fails with a bind error.
    local ports=() port seen=" " i
    for ((i = 0; i < KAFKA_NODES; i++)); do
        ports+=($((KAFKA_PORT + i)) $((KAFKA_CONTROLLER_PORT + i)))
    done
    for port in "${ports[@]}" "$MONGO_PORT" "$SMTP_PORT"; do
        [[ $seen == *" $port "* ]] &&
            die "port $port is given to two servers — check KAFKA_PORT, KAFKA_CONTROLLER_PORT (KAFKA_NODES=$KAFKA_NODES uses $KAFKA_NODES of each), MONGO_PORT, SMTP_PORT"
        seen+="$port "
    done
    # The servers this layout runs, in start order.
    if ((KAFKA_NODES == 1)); then
        KAFKA_SERVICES=(kafka)
    else
        KAFKA_SERVICES=()
        for ((i = 1; i <= KAFKA_NODES; i++)); do KAFKA_SERVICES+=("kafka-$i"); done
    fi
    SERVICES=("${KAFKA_SERVICES[@]}" mongo smtp)
}

# The project venv carries aiosmtpd; fall back to whatever python3 is on PATH.
resolve_python() {
    if [[ -n ${STACK_PYTHON:-} ]]; then
        return
    elif [[ -x "$REPO_DIR/.venv/bin/python" ]]; then
        STACK_PYTHON="$REPO_DIR/.venv/bin/python"
    else
        STACK_PYTHON=python3
    fi
}

# mongod is the real thing; FerretDB is the fallback we can build from source.
mongo_impl() {
    case $STACK_MONGO in
        auto) if command -v mongod >/dev/null 2>&1; then echo mongod; else echo ferretdb; fi ;;
        mongod | ferretdb) echo "$STACK_MONGO" ;;
        *) die "STACK_MONGO must be auto, mongod or ferretdb, got '$STACK_MONGO'" ;;
    esac
}

# ---------------------------------------------------------------- prerequisites

need_java() {
    command -v java >/dev/null 2>&1 ||
        die_prereq "Java 17+ not found on PATH — install it (Debian: apt-get install openjdk-17-jre-headless)"
    local version major
    version=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
    major=${version%%.*}
    [[ $major == 1 ]] && major=$(echo "$version" | cut -d. -f2) # 1.8 style
    [[ $major =~ ^[0-9]+$ ]] && ((major >= 17)) ||
        die_prereq "Java 17+ needed by Kafka 4, found '${version:-unknown}' on PATH — install it (Debian: apt-get install openjdk-17-jre-headless)"
}

need_mvn() {
    command -v mvn >/dev/null 2>&1 ||
        die_prereq "Maven not found on PATH (needed once to fetch the Kafka jars) — install it (Debian: apt-get install maven)"
}

need_go() {
    command -v go >/dev/null 2>&1 ||
        die_prereq "Go 1.26 not found on PATH (needed once to build FerretDB, since mongod is not on PATH) — install Go 1.26, or put mongod on PATH"
}

need_mongod() {
    command -v mongod >/dev/null 2>&1 || die_prereq "STACK_MONGO=mongod but mongod is not on PATH"
}

need_aiosmtpd() {
    "$STACK_PYTHON" -c 'import aiosmtpd' >/dev/null 2>&1 ||
        die_prereq "$STACK_PYTHON has no aiosmtpd (needed for the SMTP catcher) — pip install aiosmtpd into it, or set STACK_PYTHON"
}

# ---------------------------------------------------------------- build

hash_files() { cat -- "$@" | sha256sum | cut -d' ' -f1; }

# Two stacks started at once (parallel tests) must not build into the same
# directory at the same time.
with_build_lock() {
    mkdir -p "$CACHE_DIR"
    if command -v flock >/dev/null 2>&1; then
        (
            flock 9
            "$@"
        ) 9>"$CACHE_DIR/.build.lock"
    else
        "$@"
    fi
}

# start and stop of one STACK_DIR take turns (parallel test workers may all
# call start on the same stack); status needs no lock.
with_stack_lock() {
    if command -v flock >/dev/null 2>&1; then
        (
            flock 8
            "$@"
        ) 8>"$STACK_DIR/.lock"
    else
        "$@"
    fi
}

# Kafka jars from Maven Central, re-fetched only when pom.xml changes.
build_kafka() {
    local pom="$SCRIPT_DIR/kafka/pom.xml" stamp="$CACHE_DIR/kafka/pom.sha256" want
    want=$(hash_files "$pom")
    [[ -d $KAFKA_LIBS && -f $stamp && $(<"$stamp") == "$want" ]] && return 0

    need_java
    need_mvn
    note "fetching Kafka jars with Maven (once; ~1 min on a fresh machine)"
    mkdir -p "$CACHE_DIR/kafka"
    local tmp="$CACHE_DIR/kafka/libs.new" log="$CACHE_DIR/kafka/mvn.log"
    rm -rf "$tmp"
    mvn -B -q -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1 ||
        die "Maven could not fetch the Kafka jars — see $log"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    echo "$want" >"$stamp"
}

# Our FerretDB wrapper, rebuilt only when its sources change. SQLite in
# FerretDB v1 is modernc.org/sqlite (pure Go), so CGO stays off and no C
# compiler is needed; the PostgreSQL backend is left out to keep it small.
FERRETDB_BUILD_FLAGS=(-trimpath -buildvcs=false -tags ferretdb_no_postgresql -ldflags "-s -w")

# FerretDB's own source gets our patches/ (see each file's comment) before the
# build: a copy of the module, patched, replaces it in a copy of our wrapper's
# go.mod. The wrapper's files in the repository stay untouched.
build_ferretdb() {
    local src="$SCRIPT_DIR/ferretdb" stamp="$FERRETDB_BIN.sha256" want
    want=$( (cat "$src"/*.go "$src/go.mod" "$src/go.sum" "$src"/patches/*.patch &&
        echo "${FERRETDB_BUILD_FLAGS[*]}") | sha256sum | cut -d' ' -f1)
    [[ -x $FERRETDB_BIN && -f $stamp && $(<"$stamp") == "$want" ]] && return 0

    need_go
    note "building FerretDB (once; ~1-2 min on a fresh machine)"
    mkdir -p "$CACHE_DIR/bin"
    local log="$CACHE_DIR/bin/ferretdb-build.log" build="$CACHE_DIR/ferretdb-build"
    local module="github.com/FerretDB/FerretDB" upstream patch
    rm -rf "$build" && mkdir -p "$build/wrapper"
    cp "$src"/*.go "$src/go.mod" "$src/go.sum" "$build/wrapper/"
    {
        (cd "$build/wrapper" && go mod download "$module") &&
            upstream=$(cd "$build/wrapper" && go list -m -f '{{.Dir}}' "$module") &&
            cp -R "$upstream" "$build/ferretdb" && chmod -R u+w "$build/ferretdb" &&
            for patch in "$src"/patches/*.patch; do
                (cd "$build/ferretdb" && patch -p1 --forward --quiet <"$patch") || exit 1
            done &&
            (cd "$build/wrapper" && go mod edit -replace "$module=$build/ferretdb" &&
                CGO_ENABLED=0 go build "${FERRETDB_BUILD_FLAGS[@]}" -o "$FERRETDB_BIN.new" .)
    } >"$log" 2>&1 || die "building FerretDB failed — see $log"
    rm -rf "$build"
    mv -f "$FERRETDB_BIN.new" "$FERRETDB_BIN"
    echo "$want" >"$stamp"
}

# ToolBatch.java (see there) compiled with the JDK's compiler module, which
# Debian's JRE package ships too; rebuilt when the source or Java changes.
build_tool_batch() {
    local src="$SCRIPT_DIR/kafka/ToolBatch.java" stamp="$TOOL_BATCH_CLASSES.sha256" want
    want=$( (cat "$src" && java -version 2>&1) | sha256sum | cut -d' ' -f1)
    [[ -f $TOOL_BATCH_CLASSES/ToolBatch.class && -f $stamp && $(<"$stamp") == "$want" ]] && return 0
    java --list-modules 2>/dev/null | grep -q '^jdk\.compiler@' ||
        die_prereq "KAFKA_AUTH=scram needs Java's jdk.compiler module (a JDK, or Debian's openjdk-17-jre-headless) — install one"
    local log="$CACHE_DIR/kafka/tool-batch-build.log"
    mkdir -p "$CACHE_DIR/kafka"
    rm -rf "$TOOL_BATCH_CLASSES.new"
    java -m jdk.compiler/com.sun.tools.javac.Main -d "$TOOL_BATCH_CLASSES.new" "$src" >"$log" 2>&1 ||
        die "compiling $src failed — see $log"
    rm -rf "$TOOL_BATCH_CLASSES"
    mv "$TOOL_BATCH_CLASSES.new" "$TOOL_BATCH_CLASSES"
    echo "$want" >"$stamp"
}

build_all() {
    with_build_lock build_kafka
    if [[ $KAFKA_AUTH == scram ]]; then
        with_build_lock build_tool_batch
    fi
    if [[ $(mongo_impl) == ferretdb ]]; then
        with_build_lock build_ferretdb
    fi
}

# ---------------------------------------------------------------- processes

pid_file() { echo "$STACK_DIR/$1.pid"; }

# What a live server of *this* stack has in its command line. Matching on it
# (not just "pid alive") makes stale pid files harmless after kill -9 or a
# reboot, when the pid may belong to some other program by now. The trailing
# slash keeps /tmp/a from matching /tmp/ab.
process_marker() {
    case $1 in
        kafka*) echo "$(kafka_dir "$1")/" ;;
        mongo) echo "$STACK_DIR/mongo" ;;
        smtp) echo "$STACK_DIR/mail" ;;
    esac
}

command_line() {
    if [[ -r /proc/$1/cmdline ]]; then
        tr '\0' ' ' <"/proc/$1/cmdline"
    else
        ps -o args= -p "$1" 2>/dev/null || true
    fi
}

# Prints the pid and succeeds if the service's recorded process is alive.
# A zombie has an empty command line, so it counts as dead.
running_pid() {
    local file pid
    file=$(pid_file "$1")
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(command_line "$pid") == *"$(process_marker "$1")"* ]] || return 1
    echo "$pid"
}

# Starts "$@" in its own session (so it outlives this shell and its terminal),
# stdin from /dev/null, output appended to $2. The child writes its own pid
# before exec, which is right whether or not setsid had to fork. It closes
# every other descriptor it inherited: the lock files (8, 9) would otherwise be
# held for life, and a caller's pipe or socket kept open by a server can make
# that caller wait forever or keep a port busy.
launch() {
    local name=$1 out=$2
    shift 2
    local file
    file=$(pid_file "$name")
    rm -f "$file"
    # shellcheck disable=SC2016 # $$ and $0 are for the inner shell
    setsid bash -c '
        for fd in /proc/$$/fd/*; do
            fd=${fd##*/}
            [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)) && exec {fd}>&-
        done
        echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$file" "$@" \
        </dev/null >>"$out" 2>&1 8>&- 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -f $file ]] && return 0
        sleep 0.1
    done
    die "$name did not start — see $out"
}

port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# Refuse to start on a port that something else already holds; otherwise the
# readiness check would happily talk to the wrong server.
ensure_port_free() {
    local port=$1 var=$2
    ! port_open "$port" ||
        die "port $port ($var) is already in use by another process — stop it or choose another $var"
}

# Checked for every server before any is started, so a taken port does not
# leave half a stack behind.
ensure_ports_free() {
    local svc
    for svc in "${KAFKA_SERVICES[@]}"; do
        running_pid "$svc" >/dev/null || {
            ensure_port_free "$(kafka_port "$svc")" KAFKA_PORT
            ensure_port_free "$(kafka_controller_port "$svc")" KAFKA_CONTROLLER_PORT
        }
    done
    running_pid mongo >/dev/null || ensure_port_free "$MONGO_PORT" MONGO_PORT
    running_pid smtp >/dev/null || ensure_port_free "$SMTP_PORT" SMTP_PORT
}

# ---------------------------------------------------------------- kafka

# A Kafka server is "kafka" (the single node) or "kafka-N" (node N of a
# cluster). Their storage lives apart, so one STACK_DIR can hold both layouts.
kafka_node_id() { if [[ $1 == kafka ]]; then echo 1; else echo "${1#kafka-}"; fi; }
kafka_dir() { if [[ $1 == kafka ]]; then echo "$STACK_DIR/kafka"; else echo "$STACK_DIR/kafka-cluster/node-${1#kafka-}"; fi; }
kafka_port() { echo $((KAFKA_PORT + $(kafka_node_id "$1") - 1)); }
kafka_controller_port() { echo $((KAFKA_CONTROLLER_PORT + $(kafka_node_id "$1") - 1)); }

kafka_bootstrap_servers() {
    local svc list=()
    for svc in "${KAFKA_SERVICES[@]}"; do list+=("$HOST:$(kafka_port "$svc")"); done
    (IFS=,; echo "${list[*]}")
}

# A Kafka tool from the cached jars, logging warnings only (to stderr).
kafka_java() {
    java -Xmx256m -cp "$KAFKA_LIBS/*" \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.xml" "$@"
}

# ---------------------------------------------------------------- kafka security

# Client principals: the super user, then those of the ACL table in its order.
kafka_client_principals() {
    echo "$KAFKA_SUPER_USER"
    awk -F'\t' '!/^[[:space:]]*(#|$)/ && !seen[$1]++ { print $1 }' "$KAFKA_ACLS_FILE"
}

# Every SCRAM user: the brokers' own, then the clients.
kafka_scram_users() {
    echo "$KAFKA_BROKER_USER"
    kafka_client_principals
}

# Names go into JAAS lines, SCRAM arguments and variable names unquoted; the
# table's principals are the services, never the super user or a node.
check_principal_names() {
    local name
    for name in $(kafka_client_principals | tail -n +2); do
        [[ $name =~ ^[a-z][a-z0-9_]*$ ]] ||
            die "principal '$name' in $KAFKA_ACLS_FILE: use lower-case letters, digits and _ only"
        [[ $name != "$KAFKA_SUPER_USER" && $name != "$KAFKA_BROKER_USER" && $name != "$KAFKA_CONTROLLER_USER" ]] ||
            die "principal '$name' in $KAFKA_ACLS_FILE is reserved for stack.sh"
    done
}

# 192 random bits as hex: nothing to quote in JAAS or --add-scram.
new_password() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

# Passwords are mostly read inside $(...), where a failure would not stop the
# script: callers check once with need_kafka_credentials beforehand.
kafka_password() {
    local file="$KAFKA_CRED_DIR/$1.password"
    [[ -s $file ]] || die "no Kafka password for '$1' in $KAFKA_CRED_DIR"
    echo "$(<"$file")"
}

need_kafka_credentials() {
    local name
    for name in "$KAFKA_CONTROLLER_USER" $(kafka_scram_users); do
        [[ -s $KAFKA_CRED_DIR/$name.password ]] ||
            die "no Kafka credentials in $KAFKA_CRED_DIR yet — run stack.sh start with KAFKA_AUTH=scram first"
    done
}

# One password per principal, made once per STACK_DIR and kept: the metadata
# log holds the SCRAM users from the first start on. Also a Java client
# properties file per client principal, for the Kafka tools' --command-config.
ensure_kafka_credentials() {
    check_principal_names
    (umask 077 && mkdir -p "$KAFKA_CRED_DIR")
    local name file
    for name in "$KAFKA_CONTROLLER_USER" $(kafka_scram_users); do
        file="$KAFKA_CRED_DIR/$name.password"
        [[ -s $file ]] && continue
        (umask 077 && new_password >"$file.tmp" && mv -f "$file.tmp" "$file")
    done
    need_kafka_credentials
    for name in $(kafka_client_principals); do
        file="$KAFKA_CRED_DIR/$name.properties"
        (umask 077 && kafka_client_properties java "$name" >"$file.tmp" && mv -f "$file.tmp" "$file")
    done
}

# The client properties of one principal; "java" adds sasl.jaas.config.
kafka_client_properties() {
    local flavour=$1 name=$2 password
    if [[ $KAFKA_AUTH == none ]]; then
        echo "security.protocol=PLAINTEXT"
        return
    fi
    password=$(kafka_password "$name")
    echo "security.protocol=SASL_PLAINTEXT"
    echo "sasl.mechanism=SCRAM-SHA-512"
    echo "sasl.username=$name"
    echo "sasl.password=$password"
    if [[ $flavour == java ]]; then
        echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$name\" password=\"$password\";"
    fi
}

# Where the stamps of what the metadata log holds live: beside the storage of
# the layout (one node or the cluster), so deleting it forgets them too.
kafka_meta_dir() {
    if ((KAFKA_NODES == 1)); then echo "$STACK_DIR/kafka"; else echo "$STACK_DIR/kafka-cluster"; fi
}

# The SCRAM users the metadata should hold, one "name sha256(password)" line
# each: stored beside the storage, it tells which ones a start must still set.
kafka_user_digests() {
    local name password
    for name in $(kafka_scram_users); do
        password=$(kafka_password "$name")
        echo "$name $(printf '%s' "$password" | sha256sum | cut -d' ' -f1)"
    done
}

# Only a super user who can log in may add SCRAM users: the brokers' controller
# listener does not take that request, and the client listener takes SCRAM
# only. So storage formatted without the operator's current credentials
# (KAFKA_AUTH=none, or kafka-credentials/ deleted) cannot be secured in place.
# Checked before any server starts.
check_kafka_storage_users() {
    local svc meta formatted=0 line
    for svc in "${KAFKA_SERVICES[@]}"; do
        [[ -f $(kafka_dir "$svc")/data/meta.properties ]] && formatted=1
    done
    ((formatted)) || return 0
    meta=$(kafka_meta_dir)
    line=$(kafka_user_digests | grep "^$KAFKA_SUPER_USER ")
    [[ -f $meta/scram-users ]] && grep -qxF "$line" "$meta/scram-users" && return 0
    local why="it was formatted with KAFKA_AUTH=none"
    [[ -f $meta/scram-users ]] && why="the $KAFKA_SUPER_USER password in $KAFKA_CRED_DIR is not the one it was formatted with"
    die "Kafka storage in $meta cannot take KAFKA_AUTH=scram: $why. Run stack.sh stop and delete $(kafka_data_dirs) (its topics are lost), or use another STACK_DIR"
}

kafka_data_dirs() {
    local svc dirs=()
    for svc in "${KAFKA_SERVICES[@]}"; do dirs+=("$(kafka_dir "$svc")/data"); done
    echo "${dirs[*]}"
}

# SCRAM users the metadata lacks (a principal added to the ACL table, a
# password file deleted), set by the operator through the client listener.
# Setting an existing user again only gives it a new salt.
kafka_set_scram_users() {
    local name password out="$LOG_DIR/kafka-auth.log" tab=$'\t'
    local config="$KAFKA_CRED_DIR/$KAFKA_SUPER_USER.properties"
    note "setting Kafka SCRAM users: $*"
    for name in "$@"; do
        password=$(kafka_password "$name")
        echo "--bootstrap-server$tab$(kafka_bootstrap_servers)$tab--command-config$tab$config$tab--alter${tab}--entity-type${tab}users$tab--entity-name$tab$name$tab--add-config${tab}SCRAM-SHA-512=[password=$password]"
    done | kafka_tool_batch org.apache.kafka.tools.ConfigCommand >>"$out" 2>&1 ||
        die "setting Kafka SCRAM users failed — see $out"
}

# The ACL table as AclCommand calls: rows grouped by principal, resource,
# pattern and operations, then principals with the same grants merged (the
# cluster's IdempotentWrite). One line per call, tab-separated: resource,
# pattern, operations, principals, names (both comma-separated).
kafka_acl_calls() {
    awk -F'\t' '
        /^[[:space:]]*(#|$)/ { next }
        NF != 5 { printf "%s:%d: expected 5 tab-separated fields\n", FILENAME, FNR > "/dev/stderr"; bad = 1; exit 1 }
        {
            key = $2 "\t" $3 "\t" $5 "\t" $1
            if (!(key in names)) order[++n] = key
            names[key] = (key in names) ? names[key] "," $4 : $4
        }
        END {
            if (bad) exit 1
            for (i = 1; i <= n; i++) {
                split(order[i], f, "\t")
                grant = f[1] "\t" f[2] "\t" f[3] "\t" names[order[i]]
                if (!(grant in who)) seen[++m] = grant
                who[grant] = (grant in who) ? who[grant] "," f[4] : f[4]
            }
            for (i = 1; i <= m; i++) {
                split(seen[i], f, "\t")
                print f[1] "\t" f[2] "\t" f[3] "\t" who[seen[i]] "\t" f[4]
            }
        }' "$KAFKA_ACLS_FILE"
}

# Adds every ACL of the table with Kafka's own AclCommand, as the super user,
# all calls in one JVM. Adding an ACL that exists changes nothing, so this may
# run any number of times.
kafka_apply_acls() {
    local out="$LOG_DIR/kafka-auth.log" calls resource pattern ops principals names item
    local config="$KAFKA_CRED_DIR/$KAFKA_SUPER_USER.properties"
    calls=$(kafka_acl_calls) || die "cannot read $KAFKA_ACLS_FILE"
    local args=()
    while IFS=$'\t' read -r resource pattern ops principals names; do
        args=(--bootstrap-server "$(kafka_bootstrap_servers)" --command-config "$config" --add
            --resource-pattern-type "$pattern")
        for item in ${principals//,/ }; do args+=(--allow-principal "User:$item"); done
        for item in ${ops//,/ }; do args+=(--operation "$item"); done
        case $resource in
            topic | group) for item in ${names//,/ }; do args+=("--$resource" "$item"); done ;;
            cluster) args+=(--cluster) ;;
            *) die "$KAFKA_ACLS_FILE: unknown resource '$resource' (topic, group or cluster)" ;;
        esac
        (IFS=$'\t' && echo "${args[*]}")
    done <<<"$calls" | kafka_tool_batch org.apache.kafka.tools.AclCommand >>"$out" 2>&1 ||
        die "adding Kafka ACLs failed — see $out"
}

# After the brokers are up: users and ACLs the metadata log does not hold
# yet. Files beside the storage say what it holds, so a restart costs nothing;
# formatting removes them.
kafka_secure() {
    local meta want missing
    meta=$(kafka_meta_dir)
    [[ -f $meta/scram-users ]] || : >"$meta/scram-users"
    want=$(kafka_user_digests)
    missing=$(grep -vxF -f "$meta/scram-users" <<<"$want" | cut -d' ' -f1 | tr '\n' ' ') || true
    if [[ -n $missing ]]; then
        # shellcheck disable=SC2086 # a list of names
        kafka_set_scram_users $missing
        echo "$want" >"$meta/scram-users"
    fi
    want=$(hash_files "$KAFKA_ACLS_FILE")
    if [[ ! -f $meta/acls.sha256 || $(<"$meta/acls.sha256") != "$want" ]]; then
        note "adding Kafka ACLs from $KAFKA_ACLS_FILE (log $LOG_DIR/kafka-auth.log)"
        kafka_apply_acls
        echo "$want" >"$meta/acls.sha256"
    fi
}

# Runs Kafka tool CLASS once per line of stdin (TAB-separated arguments), all
# in one JVM; see kafka/ToolBatch.java.
kafka_tool_batch() {
    java -Xmx256m -cp "$TOOL_BATCH_CLASSES:$KAFKA_LIBS/*" \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.xml" ToolBatch "$1"
}

# Regenerated on every start so port changes take effect. (A single KRaft
# voter re-registers its controller endpoint at start, so even a new
# KAFKA_CONTROLLER_PORT on formatted storage works: checked on 4.4.0.)
write_kafka_config() {
    local svc=$1 dir port cport quorum rf isr
    dir=$(kafka_dir "$svc")
    port=$(kafka_port "$svc")
    cport=$(kafka_controller_port "$svc")
    mkdir -p "$dir"
    if [[ $svc == kafka ]]; then
        # One voter, formatted with --standalone (dynamic quorum).
        quorum="controller.quorum.bootstrap.servers=$HOST:$cport"
        rf=1 isr=1
    else
        # A fixed voter set: every node knows all controllers from its config,
        # so the nodes are formatted independently with the same cluster id.
        local s voters=()
        for s in "${KAFKA_SERVICES[@]}"; do
            voters+=("$(kafka_node_id "$s")@$HOST:$(kafka_controller_port "$s")")
        done
        quorum="controller.quorum.voters=$(IFS=,; echo "${voters[*]}")"
        rf=3 isr=2
    fi
    local client=PLAINTEXT protocol=PLAINTEXT controller_protocol=PLAINTEXT
    if [[ $KAFKA_AUTH == scram ]]; then
        client=CLIENT protocol=SASL_PLAINTEXT controller_protocol=SASL_PLAINTEXT
        # The file holds the nodes' passwords.
        (umask 077 && : >"$dir/server.properties")
        chmod 600 "$dir/server.properties"
    fi
    cat >"$dir/server.properties" <<EOF
# Generated by deploy/local/stack.sh on each start; edits are overwritten.
process.roles=broker,controller
node.id=$(kafka_node_id "$svc")
listeners=$client://$HOST:$port,CONTROLLER://$HOST:$cport
advertised.listeners=$client://$HOST:$port
listener.security.protocol.map=$client:$protocol,CONTROLLER:$controller_protocol
inter.broker.listener.name=$client
controller.listener.names=CONTROLLER
$quorum
log.dirs=$dir/data

# Replication matched to the node count: 1 and 1 on one node (internal topics
# could not be created otherwise), 3 and 2 on three (one node may fail).
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
# Fewer internal partitions than the defaults (50): a faster first consumer
# group and transaction on a laptop.
offsets.topic.num.partitions=3
transaction.state.log.num.partitions=3

# After a kill -9 the dead broker's registration blocks the restarted one
# until its session times out (default 9 s); a shorter session makes crash
# tests faster and still leaves room for a busy laptop's pauses.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1500

# Tests create consumer groups constantly; don't make each one wait 3 s.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
EOF
    if [[ $KAFKA_AUTH == scram ]]; then
        kafka_security_config >>"$dir/server.properties"
    fi
}

# KAFKA_AUTH=scram: clients and brokers authenticate with SCRAM-SHA-512 on the
# client listener, nodes with PLAIN on the controller listener (the static
# user_<name> entry is the server's side, username/password the client's).
# Nothing is allowed that no ACL grants, except to the super users.
kafka_security_config() {
    local broker_pw controller_pw
    broker_pw=$(kafka_password "$KAFKA_BROKER_USER")
    controller_pw=$(kafka_password "$KAFKA_CONTROLLER_USER")
    cat <<EOF

# KAFKA_AUTH=scram (see deploy/local/README.md, "Kafka security").
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_BROKER_USER" password="$broker_pw";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$KAFKA_CONTROLLER_USER" password="$controller_pw" user_$KAFKA_CONTROLLER_USER="$controller_pw";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$KAFKA_BROKER_USER;User:$KAFKA_CONTROLLER_USER;User:$KAFKA_SUPER_USER
EOF
}

# The cluster id all nodes of one layout share, made once by Kafka's own tool.
kafka_cluster_id() {
    local file=$1 out=$2 id
    if [[ ! -s $file ]]; then
        id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$out" | tail -n 1)
        [[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka random-uuid failed — see $out"
        echo "$id" >"$file"
    fi
    cat "$file"
}

# Format storage once. A data directory without meta.properties was never
# formatted, so it holds nothing worth keeping: clear it so an interrupted
# format cannot block the next one.
format_kafka_storage() {
    local svc=$1 dir data out id
    dir=$(kafka_dir "$svc")
    data="$dir/data"
    out="$LOG_DIR/$svc.out"
    [[ -f $data/meta.properties ]] && return 0
    rm -rf "$data"
    # New metadata holds no ACLs, and SCRAM users only if added below.
    local meta
    meta=$(kafka_meta_dir)
    rm -f "$meta/scram-users" "$meta/acls.sha256"
    local args=(format)
    if [[ $svc == kafka ]]; then
        id=$(kafka_cluster_id "$dir/cluster.id" "$out")
        args+=(--standalone)
    else
        id=$(kafka_cluster_id "$STACK_DIR/kafka-cluster/cluster.id" "$out")
    fi
    args+=(-t "$id" -c "$dir/server.properties")
    if [[ $KAFKA_AUTH == none ]]; then
        kafka_java kafka.tools.StorageTool "${args[@]}" >>"$out" 2>&1 ||
            die "formatting Kafka storage for $svc failed — see $out"
        return 0
    fi
    # The SCRAM users exist before the broker first starts (the brokers need
    # theirs to replicate); the passwords go through stdin, not the process list.
    local name password
    for name in $(kafka_scram_users); do
        password=$(kafka_password "$name")
        args+=(--add-scram "SCRAM-SHA-512=[name=$name,password=$password]")
    done
    (IFS=$'\t' && echo "${args[*]}") | kafka_tool_batch kafka.tools.StorageTool >>"$out" 2>&1 ||
        die "formatting Kafka storage for $svc failed — see $out"
    kafka_user_digests >"$meta/scram-users"
}

# Readiness is the broker's own "Kafka Server started" line. Where this run's
# lines begin in each log, so an earlier run's line does not count; -1 means
# the node was already running before this start.
declare -A KAFKA_LOG_OFFSET=()

start_kafka() {
    local svc=$1 pid dir log
    if pid=$(running_pid "$svc"); then
        note "$svc already running (pid $pid)"
        KAFKA_LOG_OFFSET[$svc]=-1
        return 0
    fi
    dir=$(kafka_dir "$svc")
    write_kafka_config "$svc"
    format_kafka_storage "$svc"

    log="$LOG_DIR/$svc.log"
    KAFKA_LOG_OFFSET[$svc]=0
    [[ -f $log ]] && KAFKA_LOG_OFFSET[$svc]=$(wc -c <"$log")

    # shellcheck disable=SC2086 # heap options are a word list on purpose
    launch "$svc" "$LOG_DIR/$svc.out" \
        java $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dkafka.logs.dir="$LOG_DIR" -Dkafka.log.name="$svc" \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.xml" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
    note "$svc starting (pid $(<"$(pid_file "$svc")"), log $log)"
}

kafka_ready() {
    local svc=$1 log size offset
    port_open "$(kafka_port "$svc")" || return 1
    offset=${KAFKA_LOG_OFFSET[$svc]:--1}
    ((offset < 0)) && return 0
    log="$LOG_DIR/$svc.log"
    [[ -f $log ]] || return 1
    size=$(wc -c <"$log")
    # The file may have been rolled over since; then read all of it.
    ((size >= offset)) || offset=0
    tail -c +"$((offset + 1))" "$log" | grep -q "Kafka Server started"
}

# ---------------------------------------------------------------- mongo

start_mongo() {
    local pid impl
    if pid=$(running_pid mongo); then
        note "mongo already running (pid $pid)"
        return 0
    fi
    impl=$(mongo_impl)
    if [[ $impl == mongod ]]; then
        mkdir -p "$STACK_DIR/mongo"
        launch mongo "$LOG_DIR/mongo.log" \
            mongod --dbpath "$STACK_DIR/mongo" --bind_ip "$HOST" --port "$MONGO_PORT"
    else
        launch mongo "$LOG_DIR/mongo.log" \
            "$FERRETDB_BIN" -listen-addr "$HOST:$MONGO_PORT" -data-dir "$STACK_DIR/mongo"
    fi
    note "mongo ($impl) starting (pid $(<"$(pid_file mongo)"), log $LOG_DIR/mongo.log)"
}

# Both mongod and ferretdb-lite bind the port only once they can serve, and
# start_mongo made sure nobody else held it.
mongo_ready() { port_open "$MONGO_PORT"; }

# ---------------------------------------------------------------- smtp

start_smtp() {
    local pid
    if pid=$(running_pid smtp); then
        note "smtp already running (pid $pid)"
        return 0
    fi
    mkdir -p "$STACK_DIR/mail"
    launch smtp "$LOG_DIR/smtp.log" \
        "$STACK_PYTHON" -u "$SCRIPT_DIR/smtp_catcher.py" \
        --host "$HOST" --port "$SMTP_PORT" --mail-dir "$STACK_DIR/mail"
    note "smtp starting (pid $(<"$(pid_file smtp)"), log $LOG_DIR/smtp.log)"
}

# A real SMTP greeting, not just an open port.
smtp_ready() {
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        IFS= read -r -t 2 line <&3 || exit 1
        printf "QUIT\r\n" >&3
        [[ $line == 220* ]]' "$HOST" "$SMTP_PORT" 2>/dev/null
}

# ---------------------------------------------------------------- commands

service_port() {
    case $1 in
        kafka*) kafka_port "$1" ;;
        mongo) echo "$MONGO_PORT" ;;
        smtp) echo "$SMTP_PORT" ;;
    esac
}

service_ready() {
    case $1 in
        kafka*) kafka_ready "$1" ;;
        mongo) mongo_ready ;;
        smtp) smtp_ready ;;
    esac
}

service_log() {
    case $1 in
        kafka*) echo "$LOG_DIR/$1.log (and $1.out)" ;;
        *) echo "$LOG_DIR/$1.log" ;;
    esac
}

wait_until_ready() {
    local deadline=$((SECONDS + STACK_START_TIMEOUT)) pending=("${SERVICES[@]}") left svc
    while ((${#pending[@]} > 0)); do
        left=()
        for svc in "${pending[@]}"; do
            running_pid "$svc" >/dev/null ||
                die "$svc exited while starting — see $(service_log "$svc")"
            service_ready "$svc" || left+=("$svc")
        done
        pending=("${left[@]+"${left[@]}"}")
        ((${#pending[@]} == 0)) && break
        ((SECONDS < deadline)) ||
            die "${pending[0]} did not answer on $HOST:$(service_port "${pending[0]}") within ${STACK_START_TIMEOUT}s — see $(service_log "${pending[0]}")"
        sleep 0.25
    done
}

print_endpoints() {
    local credentials=
    if [[ $KAFKA_AUTH == scram ]]; then
        need_kafka_credentials
        credentials=$(kafka_credential_lines)
    fi
    echo "KAFKA_BOOTSTRAP_SERVERS=$(kafka_bootstrap_servers)"
    echo "MONGODB_URL=mongodb://$HOST:$MONGO_PORT"
    echo "SMTP_HOST=$HOST"
    echo "SMTP_PORT=$SMTP_PORT"
    if [[ -n $credentials ]]; then
        echo "$credentials"
    fi
}

# The format is in this file's header and README.md; test harnesses parse it.
kafka_credential_lines() {
    local name password
    echo "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"
    echo "KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
    for name in $(kafka_client_principals); do
        password=$(kafka_password "$name")
        echo "KAFKA_SASL_USERNAME_${name^^}=$name"
        echo "KAFKA_SASL_PASSWORD_${name^^}=$password"
    done
}

cmd_build() {
    build_all
}

cmd_start() {
    local started=$SECONDS
    # Every check before anything starts: a missing tool must not leave half a stack.
    need_java
    running_pid smtp >/dev/null || need_aiosmtpd
    [[ $(mongo_impl) == mongod ]] && need_mongod
    build_all
    ensure_ports_free
    mkdir -p "$LOG_DIR"
    local svc
    if [[ $KAFKA_AUTH == scram ]]; then
        ensure_kafka_credentials
        check_kafka_storage_users
        # Tool output may quote a password.
        (umask 077 && : >>"$LOG_DIR/kafka-auth.log")
    fi
    for svc in "${KAFKA_SERVICES[@]}"; do start_kafka "$svc"; done
    start_mongo
    start_smtp
    wait_until_ready
    if [[ $KAFKA_AUTH == scram ]]; then
        kafka_secure
    fi
    note "all up in $((SECONDS - started))s (state in $STACK_DIR)"
    print_endpoints
}

cmd_stop() {
    local svc pid pids=() names=()
    for svc in "${ALL_SERVICES[@]}"; do
        if pid=$(running_pid "$svc"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$svc")
        fi
    done
    local deadline=$((SECONDS + STACK_STOP_TIMEOUT)) i alive
    while :; do
        alive=0
        for i in "${!names[@]}"; do
            running_pid "${names[$i]}" >/dev/null && alive=1
        done
        ((alive == 0 || SECONDS >= deadline)) && break
        sleep 0.25
    done
    local killed=0
    for i in "${!names[@]}"; do
        if running_pid "${names[$i]}" >/dev/null; then
            note "${names[$i]} ignored SIGTERM for ${STACK_STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
            killed=1
        fi
    done
    # Give the kernel a moment to release the ports before a quick restart.
    ((killed == 0)) || sleep 1
    for svc in "${ALL_SERVICES[@]}"; do
        rm -f "$(pid_file "$svc")"
    done
    if ((${#names[@]} == 0)); then
        note "nothing running in $STACK_DIR"
    else
        note "stopped ${names[*]}"
    fi
}

cmd_status() {
    local svc pid state all_up=0 label
    for svc in "${SERVICES[@]}"; do
        state=down
        pid=-
        if pid=$(running_pid "$svc"); then
            if [[ $svc == smtp ]]; then smtp_ready && state=up; else port_open "$(service_port "$svc")" && state=up; fi
        else
            pid=-
        fi
        [[ $state == up ]] || all_up=1
        label=$svc
        [[ $svc == mongo ]] && label="mongo($(mongo_impl))"
        printf '%-16s pid %-8s %s:%-6s %s\n' "$label" "$pid" "$HOST" "$(service_port "$svc")" "$state"
    done
    return "$all_up"
}

cmd_kafka_class() {
    (($# >= 1)) || die "usage: stack.sh kafka-class CLASS [ARGS...]"
    need_java
    with_build_lock build_kafka
    exec java -Xmx512m -cp "$KAFKA_LIBS/*" \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.xml" "$@"
}

cmd_kafka_client() {
    local flavour=librdkafka
    if [[ ${1:-} == --java ]]; then
        flavour=java
        shift
    fi
    (($# <= 1)) || die "usage: stack.sh kafka-client [--java] [PRINCIPAL]"
    local name=${1:-$KAFKA_SUPER_USER} known
    known=$(kafka_client_principals | tr '\n' ' ')
    [[ " $known" == *" $name "* ]] || die "unknown Kafka principal '$name' — one of: $known"
    if [[ $KAFKA_AUTH == scram ]]; then
        need_kafka_credentials
    fi
    kafka_client_properties "$flavour" "$name"
}

usage() {
    sed -n '2,/^# See README/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 64
}

main() {
    (($# >= 1)) || usage
    local cmd=$1
    shift
    check_settings
    resolve_python
    resolve_stack_dir
    case $cmd in
        build) cmd_build ;;
        start) with_stack_lock cmd_start ;;
        stop) with_stack_lock cmd_stop ;;
        status) cmd_status ;;
        env) print_endpoints ;;
        kafka-class) cmd_kafka_class "$@" ;;
        kafka-client) cmd_kafka_client "$@" ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
