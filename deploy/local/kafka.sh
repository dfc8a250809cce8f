#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, broker+controller in one JVM) on 127.0.0.1, for
# tests and demos. The jars come from Maven Central through deploy/local/pom.xml; no
# distribution tarball, no container.
#
#   deploy/local/kafka.sh jars     resolve the jars into deploy/local/.cache (idempotent)
#   deploy/local/kafka.sh start    resolve, format fresh storage, start, wait until it answers
#   deploy/local/kafka.sh stop     SIGTERM, then SIGKILL after a deadline; 0 if not running
#   deploy/local/kafka.sh status   0 if running and answering metadata requests, else 1
#
# Environment (all optional):
#   KAFKA_PORT             broker listener on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1 (default KAFKA_PORT+1)
#   KAFKA_STATE_DIR        config, data, pid and log files (default <repo>/.local/kafka-PORT)
#   KAFKA_HEAP_OPTS        JVM heap (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 60)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_OWNER_PID        if set, a watchdog stops the broker once that process is gone
#                          (the pytest fixture passes its own pid: no stray broker after a
#                          killed test run)
#   KAFKA_PYTHON           python with confluent_kafka for the readiness probe
#                          (default <repo>/.venv/bin/python; without it the probe falls back
#                          to the broker's "started" log line plus a TCP connect)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
POM="$HERE/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
CACHE_DIR="$HERE/.cache"
LIBS_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
# The libs dir is complete when this marker holds the hash of the pom that produced it.
LIBS_MARKER="$CACHE_DIR/kafka-$KAFKA_VERSION/.complete"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-$REPO/.local/kafka-$KAFKA_PORT}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_PYTHON="${KAFKA_PYTHON:-$REPO/.venv/bin/python}"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

PID_FILE="$KAFKA_STATE_DIR/kafka.pid"
WATCHDOG_PID_FILE="$KAFKA_STATE_DIR/watchdog.pid"
LOG_FILE="$KAFKA_STATE_DIR/broker.log"
CONFIG_FILE="$KAFKA_STATE_DIR/server.properties"
LOG4J_FILE="$KAFKA_STATE_DIR/log4j2.properties"
DATA_DIR="$KAFKA_STATE_DIR/data"

say() { echo "kafka.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

libs_complete() {
    [[ -f "$LIBS_MARKER" && "$(cat "$LIBS_MARKER")" == "$(pom_hash)" ]] &&
        compgen -G "$LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null
}

cmd_jars() {
    libs_complete && return 0
    command -v mvn >/dev/null || die "mvn not found: install Maven (Debian package 'maven')"
    command -v java >/dev/null || die "java not found: install a JDK 17+ (Debian 'default-jdk-headless')"
    mkdir -p "$CACHE_DIR"
    # Several brokers (other ports, other engineers) may start at once: one resolver at a time.
    exec 9>"$CACHE_DIR/.resolve.lock"
    flock 9
    if ! libs_complete; then
        local started tmp
        started=$(date +%s)
        tmp="$(mktemp -d "$CACHE_DIR/.libs.XXXXXX")"
        say "resolving Apache Kafka $KAFKA_VERSION jars with Maven"
        if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
            -Dkafka.libs.dir="$tmp" >"$tmp.log" 2>&1; then
            tail -n 40 "$tmp.log" >&2
            rm -rf "$tmp" "$tmp.log"
            die "Maven could not resolve the Kafka jars (see above)"
        fi
        rm -f "$tmp.log"
        rm -rf "$LIBS_DIR"
        mkdir -p "$(dirname "$LIBS_DIR")"
        mv "$tmp" "$LIBS_DIR"
        pom_hash >"$LIBS_MARKER"
        say "jars ready in $LIBS_DIR ($(du -sh "$LIBS_DIR" | cut -f1), $(($(date +%s) - started)) s)"
    fi
    flock -u 9
    exec 9>&-
}

# A process's command line with spaces between the arguments (empty if it is gone).
cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# The pid from the pid file if that process is alive and is our broker, else nothing.
broker_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # A recycled pid must never be signalled: check it runs kafka.Kafka with our config.
    [[ "$(cmdline_of "$pid")" == *"kafka.Kafka $CONFIG_FILE"* ]] || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

have_probe_python() { [[ -x "$KAFKA_PYTHON" ]] && "$KAFKA_PYTHON" -c 'import confluent_kafka' 2>/dev/null; }

# Wait until the broker answers a metadata request naming itself (node 1), within $1 s,
# giving up early if process $2 (when given) dies.
wait_answering() {
    local timeout="$1" pid="${2:-}"
    if have_probe_python; then
        "$KAFKA_PYTHON" - "$BOOTSTRAP" "$timeout" "$pid" <<'PY'
import os, sys, time
from confluent_kafka.admin import AdminClient

bootstrap, timeout, pid = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + timeout
# log_level 0: no "connection refused" noise while the broker is still starting.
admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
while time.monotonic() < deadline:
    if pid:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            sys.exit(2)
    try:
        md = admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        if 1 in md.brokers:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
        return $?
    fi
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
        if grep -q 'Kafka Server started' "$LOG_FILE" 2>/dev/null && port_open "$KAFKA_PORT"; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

write_config() {
    mkdir -p "$KAFKA_STATE_DIR"
    cat >"$CONFIG_FILE" <<EOF
# Written by deploy/local/kafka.sh at each start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR

# One node: every internal topic with one replica.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions than the production defaults (50): the first consumer group of a
# test run creates __consumer_offsets, and 50 partitions cost seconds on this machine.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=4

# Tests create every topic explicitly (with the partition count they mean), and so must
# production: a typo in a topic name fails loudly instead of creating an empty topic.
auto.create.topics.enable=false
num.partitions=1
# A consumer joining a group gets its assignment at once instead of after 3 s.
group.initial.rebalance.delay.ms=0
EOF
    cat >"$LOG4J_FILE" <<'EOF'
# Log4j 2 for the local broker: one console appender (kafka.sh sends it to broker.log).
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
# Per-request and per-partition state chatter: only problems.
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = warn
EOF
}

# The JVM command line shared by the storage formatter and the broker, in JAVA_CMD; the
# broker's collector settings (those of Kafka's own kafka-run-class.sh) in BROKER_JVM_OPTS.
set_java_cmd() {
    local heap
    read -r -a heap <<<"$KAFKA_HEAP_OPTS"
    JAVA_CMD=(java "${heap[@]}" -server -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$LOG4J_FILE" -cp "$LIBS_DIR/*")
    BROKER_JVM_OPTS=(-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
        -XX:+ExplicitGCInvokesConcurrent)
}

# Stop process $1 (SIGTERM, SIGKILL after the deadline) and wait until it is gone.
terminate() {
    local pid="$1" deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        say "broker pid $pid ignored SIGTERM for ${KAFKA_STOP_TIMEOUT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
}

stop_watchdog() {
    if [[ -f "$WATCHDOG_PID_FILE" ]]; then
        local wpid
        wpid="$(cat "$WATCHDOG_PID_FILE")"
        # Only our own watchdog: its command line names this state dir.
        if [[ "$wpid" =~ ^[0-9]+$ ]] && [[ "$wpid" != "${KAFKA_WATCHDOG_SELF:-}" ]] &&
            [[ "$(cmdline_of "$wpid")" == *"kafka-watchdog $KAFKA_STATE_DIR"* ]]; then
            kill -TERM "$wpid" 2>/dev/null || true
        fi
        rm -f "$WATCHDOG_PID_FILE"
    fi
}

start_watchdog() {
    local owner="$1"
    [[ "$owner" =~ ^[0-9]+$ ]] || die "KAFKA_OWNER_PID must be a pid, got '$owner'"
    # Polls every second; when the owner is gone it runs `kafka.sh stop` for this state dir.
    setsid bash -c '
        owner=$1 script=$2
        export KAFKA_WATCHDOG_SELF=$$
        while kill -0 "$owner" 2>/dev/null; do sleep 1; done
        exec "$script" stop
    ' "kafka-watchdog $KAFKA_STATE_DIR" "$owner" "$HERE/kafka.sh" \
        </dev/null >>"$KAFKA_STATE_DIR/watchdog.log" 2>&1 &
    echo $! >"$WATCHDOG_PID_FILE"
}

cmd_start() {
    local pid
    if pid="$(broker_pid)"; then
        if wait_answering 5; then
            say "already running (pid $pid)"
            echo "bootstrap=$BOOTSTRAP"
            return 0
        fi
        # Alive but not answering yet: perhaps another start is still waiting on it.
        if wait_answering "$KAFKA_START_TIMEOUT" "$pid"; then
            say "already running (pid $pid)"
            echo "bootstrap=$BOOTSTRAP"
            return 0
        fi
        die "broker pid $pid is running but does not answer on $BOOTSTRAP; run '$0 stop' first"
    fi
    rm -f "$PID_FILE"
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        port_open "$port" && die "port $port on 127.0.0.1 is already in use by another process"
    done
    command -v java >/dev/null || die "java not found: install a JDK 17+ (Debian 'default-jdk-headless')"
    cmd_jars

    local started=$SECONDS
    # Fresh storage at every start: a test/demo broker keeps nothing between runs.
    rm -rf "$DATA_DIR"
    write_config
    : >"$LOG_FILE"
    local cluster_id="-"
    # A cluster id is 16 random bytes in URL-safe base64 without padding (22 characters).
    # One starting with '-' would read as an option to the formatter: draw again, as Kafka's
    # own Uuid.randomUuid does.
    while [[ "$cluster_id" == -* ]]; do
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    set_java_cmd
    # The formatter runs for a second: C1 only and the serial collector start it ~0.5 s faster.
    if ! "${JAVA_CMD[@]}" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        kafka.tools.StorageTool format --cluster-id "$cluster_id" \
        --config "$CONFIG_FILE" >>"$LOG_FILE" 2>&1; then
        tail -n 40 "$LOG_FILE" >&2
        die "formatting the storage failed"
    fi

    # setsid: the broker has its own session, so a Ctrl-C aimed at make or pytest does not
    # reach it mid-test; `stop` (called by their teardown) shuts it down in order.
    setsid "${JAVA_CMD[@]}" "${BROKER_JVM_OPTS[@]}" kafka.Kafka "$CONFIG_FILE" </dev/null >>"$LOG_FILE" 2>&1 &
    pid=$!
    echo "$pid" >"$PID_FILE"

    local rc=0
    wait_answering "$KAFKA_START_TIMEOUT" "$pid" || rc=$?
    if ((rc != 0)); then
        if ((rc == 2)); then
            say "the broker exited during start-up; log tail:"
        else
            say "the broker did not answer on $BOOTSTRAP within ${KAFKA_START_TIMEOUT}s; log tail:"
        fi
        terminate "$pid"
        rm -f "$PID_FILE"
        tail -n 60 "$LOG_FILE" >&2
        exit 1
    fi
    if [[ -n "${KAFKA_OWNER_PID:-}" ]]; then
        start_watchdog "$KAFKA_OWNER_PID"
    fi
    say "Apache Kafka $KAFKA_VERSION started in $((SECONDS - started)) s (pid $pid, log $LOG_FILE)"
    echo "bootstrap=$BOOTSTRAP"
}

cmd_stop() {
    stop_watchdog
    local pid
    if ! pid="$(broker_pid)"; then
        rm -f "$PID_FILE"
        say "not running on port $KAFKA_PORT"
        return 0
    fi
    terminate "$pid"
    rm -f "$PID_FILE"
    say "stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(broker_pid)" && wait_answering 5 "$pid"; then
        echo "running pid=$pid bootstrap=$BOOTSTRAP"
        return 0
    fi
    if [[ -n "${pid:-}" ]]; then
        echo "not answering pid=$pid bootstrap=$BOOTSTRAP"
    else
        echo "not running bootstrap=$BOOTSTRAP"
    fi
    return 1
}

case "${1:-}" in
jars) cmd_jars ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    echo "usage: $0 start|stop|status|jars" >&2
    exit 2
    ;;
esac
