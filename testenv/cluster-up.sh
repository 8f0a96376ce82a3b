#!/usr/bin/env bash
# Bring up a 3-node RabbitMQ cluster on 127.0.0.1 from the cached chroot testenv/up.sh builds, for the tests that
# prove signbus survives losing the broker node it is connected to (tests/it/cluster_failover_loses_nothing.rs).
#
# Each node runs in a private mount namespace (the cached tree bind-mounted read-only at
# .run/cluster/nodeN/rootfs, its own etc/data/log on top, as up.sh does for the single broker), with node name
# rabbit-cN@localhost, AMQP on ${SIGNBUS_CLUSTER_AMQP_PORT:-5681}+N-1, management on
# ${SIGNBUS_CLUSTER_MGMT_PORT:-15681}+N-1, Erlang distribution on AMQP port + 20000. The three nodes share an
# Erlang cookie and their own epmd (${SIGNBUS_CLUSTER_EPMD_PORT:-4370}, in a namespace of its own, so killing a
# node never takes the others' name service with it, and the single broker's epmd on 4369 is not touched).
# The cluster forms by classic-config peer discovery; then the topology is declared through the management API:
# quorum queue signbus.requests (3 replicas, dead-lettering to signbus.dead through fanout exchange signbus.dlx,
# x-delivery-limit 1000 so that signbus's own server.max_deliveries is what a test exercises, not RabbitMQ 4's
# default limit of 20).
#
# Idempotent: a second run reuses a healthy cluster. Writes .run/cluster/env last. Independent of up.sh's broker
# (never stops, restarts or reconfigures it), but needs the chroot up.sh built.
#   testenv/cluster-up.sh            start (or reuse)
#   testenv/cluster-down.sh          stop everything
#   testenv/cluster-kill-node.sh N [--restart]
set -euo pipefail

cd "$(dirname "$0")"
TESTENV_DIR=$(pwd -P)
# shellcheck source=testenv/cluster-lib.sh
. "$TESTENV_DIR/cluster-lib.sh"

log() { printf 'cluster-up.sh: %s\n' "$*" >&2; }
die() { printf 'cluster-up.sh: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (unshare, chroot)"
[ -n "$(rootfs_version)" ] || die "no cached chroot at $ROOTFS: run testenv/up.sh once (it builds it)"

READY_TIMEOUT=${SIGNBUS_CLUSTER_READY_TIMEOUT:-90}

mkdir -p "$CLUSTER_DIR"
exec 8>"$CLUSTER_DIR/.lock"
flock 8

# ---------------------------------------------------------------------------------------------------------------
write_node_etc() { # N
    local n=$1 etc; etc=$(node_dir "$1")/etc
    mkdir -p "$etc"
    {
        echo "# Written by testenv/cluster-up.sh on every node start. Do not edit."
        echo "listeners.tcp.1 = 127.0.0.1:$(amqp_port "$n")"
        echo "listeners.ssl = none"
        echo "management.tcp.ip = 127.0.0.1"
        echo "management.tcp.port = $(mgmt_port "$n")"
        echo "cluster_formation.peer_discovery_backend = classic_config"
        local i
        for i in 1 2 3; do echo "cluster_formation.classic_config.nodes.$i = $(node_name "$i")"; done
        echo "cluster_name = signbus-test-cluster"
        echo "auth_mechanisms.1 = PLAIN"
        echo "auth_mechanisms.2 = AMQPLAIN"
        echo "auth_mechanisms.3 = ANONYMOUS"
        echo "anonymous_login_user = guest"
        echo "anonymous_login_pass = guest"
        echo "deprecated_features.permit.amqp_address_v1 = true"
        echo "log.console = true"
        echo "log.console.level = info"
        echo "log.console.use_colors = off"
        echo "log.file = false"
        echo "collect_statistics_interval = 1000"
    } >"$etc/rabbitmq.conf.tmp"
    mv "$etc/rabbitmq.conf.tmp" "$etc/rabbitmq.conf"
    cp "$TESTENV_DIR/compose/enabled_plugins" "$etc/enabled_plugins"
    : >"$etc/rabbitmq-env.conf"
}

# The enabled plugins and what they need, as symlinks in the node's data dir (up.sh does the same: boots faster).
make_plugins_dir() { # N
    local data; data=$(node_dir "$1")/data
    local full; full=$(cd "$ROOTFS" && echo usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins)
    rm -rf "$data/plugins"
    assemble_plugins "$ROOTFS/$full" "/$full" "$data/plugins" "$TESTENV_DIR/compose/enabled_plugins"
}

EPMD_INNER='
set -eu
rootfs=$1; chroot_dir=$2; port=$3
mount --bind "$rootfs" "$chroot_dir"
mount -o remount,bind,ro "$chroot_dir"
mount -t proc -o nosuid,nodev,noexec proc "$chroot_dir/proc"
exec chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/bin:/bin /usr/bin/epmd -port "$port" -address 127.0.0.1
'

start_epmd() {
    if [ -n "$(root_pids "$EPMD_ROOT")" ] && port_open "$EPMD_PORT"; then
        return 0
    fi
    port_open "$EPMD_PORT" && die "port 127.0.0.1:$EPMD_PORT is in use by something else (set SIGNBUS_CLUSTER_EPMD_PORT)"
    mkdir -p "$EPMD_ROOT"
    setsid unshare --mount --propagation private /bin/bash -c "$EPMD_INNER" epmd "$ROOTFS" "$EPMD_ROOT" "$EPMD_PORT" \
        >>"$CLUSTER_DIR/epmd.log" 2>&1 </dev/null 8>&- &
    local i
    for i in $(seq 1 40); do
        port_open "$EPMD_PORT" && { log "epmd listening on 127.0.0.1:$EPMD_PORT"; return 0; }
        sleep 0.1
    done
    tail_log "$CLUSTER_DIR/epmd.log"
    die "epmd did not start on 127.0.0.1:$EPMD_PORT"
}


start_node() { # N [keep-data]
    local n=$1 keep=${2:-0} dir; dir=$(node_dir "$1")
    local p
    for p in "$(amqp_port "$n")" "$(mgmt_port "$n")" "$(dist_port "$n")"; do
        port_open "$p" && die "port 127.0.0.1:$p (node $n) is already in use (set SIGNBUS_CLUSTER_AMQP_PORT / SIGNBUS_CLUSTER_MGMT_PORT)"
    done
    mkdir -p "$dir/rootfs"
    if [ "$keep" != 1 ]; then
        rm -rf --one-file-system "$dir/data" "$dir/log"
    fi
    mkdir -p "$dir/data" "$dir/log"
    write_node_etc "$n"
    make_plugins_dir "$n"
    install -m 400 "$CLUSTER_DIR/cookie" "$dir/data/.erlang.cookie"
    printf '\n===== %s cluster-up.sh: starting %s =====\n' "$(date -u +%FT%TZ)" "$(node_name "$n")" >>"$dir/rabbitmq.log"
    setsid unshare --mount --propagation private /bin/bash -c "$BROKER_INNER" "node$n" \
        "$ROOTFS" "$dir/rootfs" "$dir" \
        HOME=/var/lib/rabbitmq \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        RABBITMQ_NODENAME="$(node_name "$n")" \
        RABBITMQ_USE_LONGNAME=false \
        RABBITMQ_DIST_PORT="$(dist_port "$n")" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        ERL_EPMD_PORT="$EPMD_PORT" \
        RABBITMQ_PLUGINS_DIR=/var/lib/rabbitmq/plugins \
        >>"$dir/rabbitmq.log" 2>&1 </dev/null 8>&- &
    echo $! >"$dir/rabbitmq.pid"
}

# ---------------------------------------------------------------------------------------------------------------
mgmt() { # N METHOD PATH [BODY]
    local args=(-sS --fail-with-body --max-time 10 -u guest:guest -X "$2" -H 'content-type: application/json')
    [ $# -ge 4 ] && args+=(-d "$4")
    curl "${args[@]}" "$(mgmt_url "$1")$3"
}

running_nodes() { # N: how many cluster nodes node N's management API reports running
    mgmt "$1" GET '/api/nodes?columns=name,running' 2>/dev/null |
        /usr/bin/python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin) if n.get("running")))' 2>/dev/null ||
        echo 0
}

cluster_healthy() {
    local n
    for n in 1 2 3; do
        node_alive "$n" && port_open "$(amqp_port "$n")" || return 1
        [ "$(running_nodes "$n")" = 3 ] || return 1
    done
}

declare_topology() {
    local q='"x-queue-type":"quorum","x-quorum-initial-group-size":3,"x-delivery-limit":1000'
    mgmt 1 PUT /api/exchanges/%2F/signbus.dlx '{"type":"fanout","durable":true}' >/dev/null
    mgmt 1 PUT /api/exchanges/%2F/signbus '{"type":"topic","durable":true}' >/dev/null
    mgmt 1 PUT /api/queues/%2F/signbus.dead "{\"durable\":true,\"arguments\":{$q}}" >/dev/null
    mgmt 1 POST /api/bindings/%2F/e/signbus.dlx/q/signbus.dead '{"routing_key":""}' >/dev/null
    mgmt 1 PUT /api/queues/%2F/signbus.requests \
        "{\"durable\":true,\"arguments\":{$q,\"x-dead-letter-exchange\":\"signbus.dlx\"}}" >/dev/null
    mgmt 1 PUT /api/policies/%2F/signbus-expire-server-named \
        '{"pattern":"^amq\\.gen-","definition":{"expires":60000},"apply-to":"queues","priority":0}' >/dev/null
}

write_env() {
    local n urls=() mgmts=() names=()
    for n in 1 2 3; do
        urls+=("$(amqp_url "$n")"); mgmts+=("$(mgmt_url "$n")"); names+=("$(node_name "$n")")
    done
    {
        printf "export SIGNBUS_CLUSTER_AMQP_URLS='%s'\n" "${urls[*]}"
        printf "export SIGNBUS_CLUSTER_MGMT_URLS='%s'\n" "${mgmts[*]}"
        printf "export SIGNBUS_CLUSTER_NODES='%s'\n" "${names[*]}"
        for n in 1 2 3; do
            printf 'export SIGNBUS_CLUSTER_AMQP_URL_%s=%q\n' "$n" "$(amqp_url "$n")"
            printf 'export SIGNBUS_CLUSTER_MGMT_URL_%s=%q\n' "$n" "$(mgmt_url "$n")"
            printf 'export SIGNBUS_CLUSTER_NODE_%s=%q\n' "$n" "$(node_name "$n")"
        done
        printf 'export SIGNBUS_CLUSTER_EPMD_PORT=%q\n' "$EPMD_PORT"
        printf 'export SIGNBUS_CLUSTER_KILL_NODE=%q\n' "$TESTENV_DIR/cluster-kill-node.sh"
        printf 'export SIGNBUS_CLUSTER_DIR=%q\n' "$CLUSTER_DIR"
    } >"$CLUSTER_DIR/env.tmp"
    mv "$CLUSTER_DIR/env.tmp" "$CLUSTER_DIR/env"
}

wait_ready() { # nodes...: until every given node is alive, listening, and sees 3 running nodes
    local deadline=$(( $(date +%s) + READY_TIMEOUT )) n ok
    while :; do
        ok=1
        for n in "$@"; do
            if [ -z "$(node_pids "$n")" ]; then
                log "node $n ($(node_name "$n")) exited; log tail:"
                tail_log "$(node_dir "$n")/rabbitmq.log"
                return 1
            fi
            port_open "$(amqp_port "$n")" && [ "$(running_nodes "$n")" = 3 ] || ok=0
        done
        [ $ok = 1 ] && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            for n in "$@"; do log "node $n log tail:"; tail_log "$(node_dir "$n")/rabbitmq.log" 20; done
            log "cluster not ready after ${READY_TIMEOUT}s"
            return 1
        fi
        sleep 0.5
    done
}

main() {
    local t0; t0=$(date +%s.%N)
    if [ "${1:-}" = --start-node ]; then   # used by cluster-kill-node.sh --restart
        local n=$2
        node_alive "$n" && die "node $n is running"
        start_epmd
        log "restarting node $n ($(node_name "$n")) with its data"
        start_node "$n" 1
        wait_ready "$n" || die "node $n did not rejoin the cluster"
        log "node $n back in $(elapsed "$t0") s"
        return 0
    fi
    if [ -f "$CLUSTER_DIR/env" ] && cluster_healthy; then
        log "cluster already running, reusing ($(amqp_url 1) $(amqp_url 2) $(amqp_url 3))"
        write_env
        return 0
    fi
    # A cluster that lost nodes (a test killed one): start those again with their data, as they rejoin.
    if [ -f "$CLUSTER_DIR/env" ] && [ -n "$(root_pids "$EPMD_ROOT")" ]; then
        local n down=() up=0
        for n in 1 2 3; do
            if node_alive "$n"; then up=$((up + 1)); else down+=("$n"); fi
        done
        if [ $up -gt 0 ] && [ ${#down[@]} -gt 0 ]; then
            for n in "${down[@]}"; do
                [ -n "$(node_pids "$n")" ] && kill_hard $(node_pids "$n")
                log "node $n is down; starting it again with its data"
                start_node "$n" 1
            done
            if wait_ready 1 2 3; then
                log "cluster whole again in $(elapsed "$t0") s"
                write_env
                return 0
            fi
            log "the cluster did not heal; starting a fresh one"
        fi
    fi
    rm -f "$CLUSTER_DIR/env"
    if [ -n "$(all_cluster_pids)" ]; then
        log "found a partial cluster; stopping it first"
        bash "$TESTENV_DIR/cluster-down.sh" >&2
    fi
    [ -s "$CLUSTER_DIR/cookie" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLUSTER_DIR/cookie"; chmod 400 "$CLUSTER_DIR/cookie"; }
    start_epmd
    local n
    for n in 1 2 3; do start_node "$n"; done
    log "started $(node_name 1) $(node_name 2) $(node_name 3) (rabbitmq-server $(rootfs_version)); waiting for the cluster to form"
    if ! wait_ready 1 2 3; then
        bash "$TESTENV_DIR/cluster-down.sh" >&2 || true
        die "the cluster did not form"
    fi
    log "cluster formed after $(elapsed "$t0") s"
    declare_topology
    write_env
    log "ready in $(elapsed "$t0") s: $(amqp_url 1) $(amqp_url 2) $(amqp_url 3); source $CLUSTER_DIR/env"
}

main "$@"
