# Shared by cluster-up.sh, cluster-down.sh and cluster-kill-node.sh (sourced; not run on its own).
# Where the 3-node test cluster lives and how its processes are found: every process of node N has its root at
# .run/cluster/nodeN/rootfs (the mount point of its private namespace), the cluster's epmd at
# .run/cluster/epmd/rootfs; nothing else on the machine has those roots.
# shellcheck shell=bash
# shellcheck source=testenv/broker-lib.sh
. "$TESTENV_DIR/broker-lib.sh"
CLUSTER_DIR=$TESTENV_DIR/.run/cluster
CACHE_DIR=${SIGNBUS_TESTENV_CACHE:-/var/cache/signbus-testenv}
ROOTFS=$CACHE_DIR/trixie-rabbitmq
EPMD_ROOT=$CLUSTER_DIR/epmd/rootfs
EPMD_PORT=${SIGNBUS_CLUSTER_EPMD_PORT:-4370}
CLUSTER_AMQP_BASE=${SIGNBUS_CLUSTER_AMQP_PORT:-5681}
CLUSTER_MGMT_BASE=${SIGNBUS_CLUSTER_MGMT_PORT:-15681}

node_dir() { echo "$CLUSTER_DIR/node$1"; }
node_name() { echo "rabbit-c$1@localhost"; }
amqp_port() { echo $((CLUSTER_AMQP_BASE + $1 - 1)); }
mgmt_port() { echo $((CLUSTER_MGMT_BASE + $1 - 1)); }
dist_port() { echo $(($(amqp_port "$1") + 20000)); }
amqp_url() { echo "amqp://127.0.0.1:$(amqp_port "$1")"; }
mgmt_url() { echo "http://127.0.0.1:$(mgmt_port "$1")"; }

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# pids (one a line) of live processes whose root is $1
root_pids() {
    local p pid
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = "$$" ] && continue
        [ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] || continue
        grep -q '^State:[[:space:]]*Z' "$p/status" 2>/dev/null && continue
        echo "$pid"
    done
    return 0
}

node_pids() { root_pids "$(node_dir "$1")/rootfs"; }

# beam.smp of node N is running
node_alive() {
    local p
    for p in $(node_pids "$1"); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = beam.smp ] && return 0
    done
    return 1
}

all_cluster_pids() {
    local n
    for n in 1 2 3; do node_pids "$n"; done
    root_pids "$EPMD_ROOT"
}

# SIGKILLs pids and waits (max 10 s) until they are gone
kill_hard() {
    [ $# -gt 0 ] || return 0
    kill -KILL "$@" 2>/dev/null || true
    local i p any
    for i in $(seq 1 100); do
        any=0
        for p in "$@"; do [ -d "/proc/$p" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null && any=1; done
        [ $any = 0 ] && return 0
        sleep 0.1
    done
    return 1
}
