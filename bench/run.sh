#!/usr/bin/env bash
# One command, one run, every figure beside its baseline from the same run (issue 12 §1). Needs testenv/up.sh
# (broker, keys, the pubtools-sign venv); builds release binaries; prints a table and writes it as JSON
# (bench/results/run-<UTC date>.json, or $SIGNBUS_BENCH_OUT). A figure it cannot make is printed "n/a" with why.
#
#   SIGNBUS_BENCH_N        server end-to-end requests per backend × protocol (default 2000)
#   SIGNBUS_BENCH_SOAK     soak requests, sent in runs of 2000 (default 100000)
#   SIGNBUS_BENCH_WORKERS  signing threads for every server and limit (default 2)
#
# Traffic goes only to testenv's broker on loopback; every loop is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
N=${SIGNBUS_BENCH_N:-2000}
SOAK=${SIGNBUS_BENCH_SOAK:-100000}
WORKERS=${SIGNBUS_BENCH_WORKERS:-2}
REQ_N=${SIGNBUS_BENCH_REQ_N:-1000}   # requester comparison
LAT_N=200        # latency: one-reference requests, one at a time
INFLIGHT=1000    # memory: requests in flight
BATCH=${SIGNBUS_BENCH_BATCH:-5000}   # fairness: claims in the batch
FAIR_N=30        # fairness: singles measured beside the batch (each may wait behind all of it)

[ -f testenv/.run/env ] || { echo "bench/run.sh: run testenv/up.sh first" >&2; exit 1; }
# shellcheck source=/dev/null
. testenv/.run/env
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log() { printf 'bench: %s\n' "$*" >&2; }

log "release build"
cargo build --release --quiet --bin signbus --example bench-probe
BIN=$CARGO_TARGET_DIR/release/signbus
PROBE=$CARGO_TARGET_DIR/release/examples/bench-probe
KEY=$SIGNBUS_TEST_KEY
KEYFILE=${SIGNBUS_TEST_SECRET_KEY_FILE:-}
WORK=$(mktemp -d)
RESULTS=$WORK/results.tsv   # name <TAB> JSON value or {"na": reason}
: >"$RESULTS"
SERVER_PID=""
QUEUES=()
cleanup() {
    [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    local q
    for q in "${QUEUES[@]}"; do mgmt DELETE "/api/queues/%2F/$q" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
put() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }
na() { put "$1" "$(python3 -c 'import json,sys; print(json.dumps({"na": sys.argv[1]}))' "$2")"; }
mgmt() { curl -sf -u guest:guest -X "$1" -H 'content-type: application/json' "$SIGNBUS_MGMT_URL$2" ${3:+-d "$3"}; }

new_queue() { # prints a fresh request queue's name
    local q="signbus.bench.$(date +%s%N | tail -c 10)"
    mgmt PUT "/api/queues/%2F/$q" '{"durable":false,"auto_delete":false}' >/dev/null
    QUEUES+=("$q")
    echo "$q"
}

server_yaml() { # $1 backend, $2 protocol, $3 queue, $4 max_in_flight, $5 file, $6 extra server: lines
    local proto_line=""
    [ "$2" = amqp091 ] && proto_line="  protocol: amqp091"
    cat >"$5" <<EOF
broker:
  urls: ["$SIGNBUS_AMQP_URL"]
$proto_line
  sasl: anonymous
server:
  listen_to: "/queues/$3"
  reply_to: "/exchanges/amq.topic/signbus.reply.{creator}.{task_id}"
  max_in_flight: $4
  max_message_bytes: 16777216
${6:-}
metrics:
  listen: null
signing:
  backend: $1
  gnupg_home: "$GNUPGHOME"
  workers: $WORKERS
  keys:
    - {id: "$KEY", name: ed25519, secret_key_file: "$KEYFILE"}
EOF
}

start_server() { # $1 backend, $2 protocol, $3 queue, $4 max_in_flight, $5 extra server: lines
    local cfg=$WORK/server-$1-$2.yaml log=$WORK/server-$1-$2.log
    server_yaml "$1" "$2" "$3" "$4" "$cfg" "${5:-}"
    "$BIN" serve --config "$cfg" --log-format json 2>"$log" &
    SERVER_PID=$!
    local i
    for i in $(seq 1 600); do
        grep -q '"consuming' "$log" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; SERVER_PID=""; return 1; }
        sleep 0.1
    done
    log "server did not start: $(tail -3 "$log")"; return 1
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

broker_ticks() { # CPU clock ticks used so far by testenv's RabbitMQ (the processes inside its chroot)
    local p t=0 root=$SIGNBUS_TESTENV_DIR/rootfs
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] || continue
        t=$((t + $(awk '{print $14+$15}' "$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

client_yaml() { # $1 source config, $2 queue, $3 file: the testenv requester config sending to $2
    sed -e "s|/queues/signbus.requests|/queues/$2|" -e "s|chunk_size: 50|chunk_size: $BATCH|" \
        -e "s|timeout: 20|timeout: 60|" "$1" >"$3"
}

refs_args() { # $1 count, $2 tag: --digest/--reference pairs, one per line
    local i
    for ((i = 0; i < $1; i++)); do
        printf -- '--digest\nsha256:%064x\n--reference\nregistry.example.com/bench/%s:%d\n' "$i" "$2" "$i"
    done
}

# Runs a requester command under /usr/bin/time; puts {wall_s, cpu_s, rss_mib, ok} under $1.
timed() {
    local name=$1; shift
    local t=$WORK/time out=$WORK/out code=0
    /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" >"$out" 2>"$WORK/err" || code=$?
    read -r wall user sys rss <"$t" || true
    [ "$code" = 0 ] || log "$name exited $code: $(tail -c 300 "$WORK/err")"
    put "$name" "$(python3 -c 'import json,sys; w,u,s,r,c=sys.argv[1:]; print(json.dumps({"wall_s":float(w),"cpu_s":round(float(u)+float(s),3),"rss_mib":round(int(r)/1024,1),"ok":c=="0"}))' \
        "${wall:-0}" "${user:-0}" "${sys:-0}" "${rss:-0}" "$code")"
    return 0
}

# Sets CMD to a requester command line: $1 client config, $2 count, $3 tag, rest: extra arguments.
signbus_cmd() {
    local cfg=$1 n=$2 tag=$3; shift 3
    mapfile -t refs < <(refs_args "$n" "$tag")
    CMD=("$BIN" msg-container-sign --config-file "$cfg" --signing-key "$KEY" --task-id "$tag" --raw "$@" "${refs[@]}")
}
pubtools_cmd() { # the same for the real pubtools-sign 1.0.6 (through testenv's SASL relay)
    local cfg=$1 n=$2 tag=$3; shift 3
    mapfile -t refs < <(refs_args "$n" "$tag")
    CMD=("$SIGNBUS_PUBTOOLS_BIN/pubtools-sign-msg-container-sign" --config-file "$cfg" --signing-key "$KEY"
        --task-id "$tag" --raw "$@" "${refs[@]}")
}
signbus_sign() { signbus_cmd "$@"; "${CMD[@]}"; }

# The load other processes put on the machine skews every figure: recorded before and after.
put "load.before" "$(awk '{print "[" $1 "," $2 "," $3 "]"}' /proc/loadavg)"
# ---------------------------------------------------------------------------------------------------------------
log "1. limit: each backend alone (ed25519, $WORKERS workers)"
for backend in gpgme in-process; do
    if [ "$backend" = in-process ] && [ -z "$KEYFILE" ]; then
        na "limit.$backend" "testenv/.run/env has no SIGNBUS_TEST_SECRET_KEY_FILE (rerun testenv/up.sh)"; continue
    fi
    n=$N; [ "$backend" = in-process ] && n=$((N * 20))
    put "limit.$backend" "$("$PROBE" limit "$backend" "$WORKERS" "$n" "$GNUPGHOME" "$KEY" "${KEYFILE:-none}")"
done
put "limit.gpg-sign-loops" "$(python3 - "$GNUPGHOME" "$KEY" "$WORKERS" <<'PY'
import json, subprocess, sys, time, concurrent.futures as cf
home, key, w = sys.argv[1], sys.argv[2], int(sys.argv[3])
def loop(n):
    for i in range(n):
        subprocess.run(["gpg", "--homedir", home, "--batch", "--yes", "-u", key, "--sign", "--output", "/dev/null"],
                       input=b'{"critical":{}}', check=True, stderr=subprocess.DEVNULL)
t = time.time(); per = 150
with cf.ThreadPoolExecutor(w) as ex: list(ex.map(loop, [per] * w))
print(json.dumps({"per_s": per * w / (time.time() - t), "loops": w}))
PY
)"

log "2. server end to end: $N container requests from one requester, per backend × protocol"
for backend in gpgme in-process; do
    for proto in amqp1 amqp091; do
        name="e2e.$backend.$proto"
        if [ "$backend" = in-process ] && [ -z "$KEYFILE" ]; then na "$name" "no secret key file"; continue; fi
        q=$(new_queue)
        start_server "$backend" "$proto" "$q" 64 || { na "$name" "server did not start"; continue; }
        src=$SIGNBUS_CLIENT_CONFIG; [ "$proto" = amqp091 ] && src=$SIGNBUS_CLIENT_CONFIG_AMQP091
        client_yaml "$src" "$q" "$WORK/client.yaml"
        cpu0=$(awk '{print $14+$15}' "/proc/$SERVER_PID/stat"); b0=$(broker_ticks)
        c0=$(awk '{print $16+$17}' "/proc/$SERVER_PID/stat")   # the gpg processes gpgme ran and reaped
        signbus_cmd "$WORK/client.yaml" "$N" "e2e$RANDOM"
        timed "$name" "${CMD[@]}"
        cpu1=$(awk '{print $14+$15}' "/proc/$SERVER_PID/stat"); b1=$(broker_ticks)
        c1=$(awk '{print $16+$17}' "/proc/$SERVER_PID/stat")
        tick_ms=$((1000 / $(getconf CLK_TCK)))
        put "$name.server_cpu_ms_per_request" "$(python3 -c "print(round(($cpu1-$cpu0)*$tick_ms/$N, 3))")"
        put "$name.children_cpu_ms_per_request" "$(python3 -c "print(round(($c1-$c0)*$tick_ms/$N, 3))")"
        put "$name.broker_cpu_ms_per_request" "$(python3 -c "print(round(($b1-$b0)*$tick_ms/$N, 3))")"
        stop_server
    done
done

log "3. requester: signbus vs pubtools-sign 1.0.6, 1 and $REQ_N references, single and batch"
if [ -n "$KEYFILE" ]; then
    q=$(new_queue)
    start_server in-process amqp1 "$q" 64
    client_yaml "$SIGNBUS_CLIENT_CONFIG" "$q" "$WORK/client.yaml"
    client_yaml "$SIGNBUS_CLIENT_CONFIG_RELAY" "$q" "$WORK/client-relay.yaml"
    for n in 1 "$REQ_N"; do
        for kind in single batch; do
            extra=(); [ "$kind" = batch ] && extra=(--signer-type batch)
            signbus_cmd "$WORK/client.yaml" "$n" "rq$RANDOM" "${extra[@]}"
            timed "requester.signbus.$kind.$n" "${CMD[@]}"
            if [ -x "$SIGNBUS_PUBTOOLS_BIN/pubtools-sign-msg-container-sign" ]; then
                pubtools_cmd "$WORK/client-relay.yaml" "$n" "rq$RANDOM" "${extra[@]}"
                timed "requester.pubtools.$kind.$n" "${CMD[@]}"
            else
                na "requester.pubtools.$kind.$n" "no pubtools-sign venv at $SIGNBUS_PUBTOOLS_BIN"
            fi
        done
    done
    log "4. latency: $LAT_N one-reference requests one at a time"
    put "latency.in-process.amqp1" "$("$PROBE" latency "$SIGNBUS_AMQP_URL" amqp1 "$WORK/client.yaml" "$KEY" "$LAT_N")"
    stop_server
else
    na "requester" "no secret key file for the in-process server the requesters talk to"
fi
put "latency.broker_rtt.amqp1" "$("$PROBE" rtt "$SIGNBUS_AMQP_URL" amqp1 "$LAT_N")"
q=$(new_queue)
start_server gpgme amqp1 "$q" 64
client_yaml "$SIGNBUS_CLIENT_CONFIG" "$q" "$WORK/client.yaml"
put "latency.gpgme.amqp1" "$("$PROBE" latency "$SIGNBUS_AMQP_URL" amqp1 "$WORK/client.yaml" "$KEY" "$LAT_N")"

log "5. fairness: singles while a $BATCH-claim batch signs (gpgme: the backend where a batch takes long)"
put "fairness.gpgme.alone" "$("$PROBE" latency "$SIGNBUS_AMQP_URL" amqp1 "$WORK/client.yaml" "$KEY" "$FAIR_N")"
signbus_sign "$WORK/client.yaml" "$BATCH" "fair$RANDOM" --signer-type batch >/dev/null 2>&1 &
batch_pid=$!
sleep 2
put "fairness.gpgme.beside_batch" "$("$PROBE" latency "$SIGNBUS_AMQP_URL" amqp1 "$WORK/client.yaml" "$KEY" "$FAIR_N")"
wait "$batch_pid" || log "the fairness batch exited non-zero"
stop_server

# Sends $SOAK requests in runs of 2000 to the running server, sampling its RSS after each; puts the figures under $1.
soak() {
    local samples=() start_kib t0 done_n
    start_kib=$(rss_kib "$SERVER_PID")
    t0=$(date +%s.%N)
    for ((done_n = 0; done_n < SOAK; done_n += 2000)); do
        signbus_sign "$WORK/client.yaml" 2000 "soak$done_n$RANDOM" >/dev/null 2>&1 || log "soak run at $done_n failed"
        samples+=("$(rss_kib "$SERVER_PID")")
    done
    put "$1" "$(python3 -c "import json,sys; s=[int(x) for x in sys.argv[3:]]; print(json.dumps({'requests': int(sys.argv[1]), 'seconds': round(float(sys.argv[2]),1), 'start_mib': round($start_kib/1024,1), 'peak_mib': round(max(s)/1024,1), 'end_mib': round(s[-1]/1024,1), 'after_10k_mib': round(s[min(4, len(s)-1)]/1024,1), 'samples_mib': [round(x/1024,1) for x in s]}))" \
        "$SOAK" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "${samples[@]}")"
}

log "6. memory: server RSS with $INFLIGHT requests in flight, and through a $SOAK-request soak (with and without the reply cache)"
for backend in gpgme in-process; do
    if [ "$backend" = in-process ] && [ -z "$KEYFILE" ]; then na "memory.inflight.$backend" "no secret key file"; continue; fi
    q=$(new_queue)
    start_server "$backend" amqp1 "$q" "$INFLIGHT"
    client_yaml "$SIGNBUS_CLIENT_CONFIG" "$q" "$WORK/client.yaml"
    start_kib=$(rss_kib "$SERVER_PID")
    signbus_sign "$WORK/client.yaml" 1 "mem1$RANDOM" >/dev/null 2>&1
    first_kib=$(rss_kib "$SERVER_PID")   # what the first request costs once (schemas compiled, caches made)
    signbus_sign "$WORK/client.yaml" "$INFLIGHT" "mem$RANDOM" >/dev/null 2>&1
    put "memory.inflight.$backend" "$(python3 -c "import json; print(json.dumps({'start_mib': round($start_kib/1024,1), 'after_first_mib': round($first_kib/1024,1), 'peak_mib': round($(hwm_kib "$SERVER_PID")/1024,1), 'end_mib': round($(rss_kib "$SERVER_PID")/1024,1)}))")"
    if [ "$backend" = in-process ]; then
        soak memory.soak.in-process
        # The same soak on a server without the reply cache: what grows besides the cache's bounded fill.
        stop_server
        q=$(new_queue)
        start_server in-process amqp1 "$q" "$INFLIGHT" "  reply_cache: {capacity: 0}"
        client_yaml "$SIGNBUS_CLIENT_CONFIG" "$q" "$WORK/client.yaml"
        signbus_sign "$WORK/client.yaml" "$INFLIGHT" "warm$RANDOM" >/dev/null 2>&1
        soak memory.soak.in-process.no-cache
    fi
    stop_server
done

put "load.after" "$(awk '{print "[" $1 "," $2 "," $3 "]"}' /proc/loadavg)"
# ---------------------------------------------------------------------------------------------------------------
OUT=${SIGNBUS_BENCH_OUT:-bench/results}
mkdir -p "$OUT"
JSON=$OUT/run-$(date -u +%Y-%m-%dT%H%M%SZ).json
python3 bench/report.py "$RESULTS" "$JSON" "$N" "$WORKERS" "$SOAK"
log "wrote $JSON"
