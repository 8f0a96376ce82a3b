#!/usr/bin/env bash
# Stops the 3-node test cluster testenv/cluster-up.sh started: every process rooted in a node's chroot or the
# cluster's epmd chroot (TERM, 20 s grace, then KILL), which also ends their private mount namespaces. Removes
# .run/cluster/env and the pid files; keeps the logs. Idempotent. Never touches up.sh's broker.
#   --purge   also delete .run/cluster (logs and node data)
set -euo pipefail
cd "$(dirname "$0")"
TESTENV_DIR=$(pwd -P)
# shellcheck source=testenv/cluster-lib.sh
. "$TESTENV_DIR/cluster-lib.sh"
log() { printf 'cluster-down.sh: %s\n' "$*" >&2; }

PURGE=0
[ "${1:-}" = --purge ] && PURGE=1
[ -d "$CLUSTER_DIR" ] || { log "nothing to do"; exit 0; }
t0=$(date +%s.%N)
rm -f "$CLUSTER_DIR/env"

mapfile -t pids < <(all_cluster_pids)
if [ ${#pids[@]} -gt 0 ]; then
    # No graceful node-by-node shutdown: a quorum cluster stopping one node at a time waits for elections; the
    # state is thrown away on the next cluster-up.sh anyway.
    log "killing ${#pids[@]} cluster processes"
    kill_hard "${pids[@]}" || true
fi
mapfile -t left < <(all_cluster_pids)
if [ ${#left[@]} -gt 0 ]; then
    log "ERROR: cluster processes still running: ${left[*]}"
    exit 1
fi
# the namespaces died with their last process; nothing is ever mounted in this namespace
for m in "$EPMD_ROOT" "$CLUSTER_DIR"/node*/rootfs; do
    if grep -qF " $m " /proc/self/mounts; then
        log "ERROR: $m is mounted in this namespace"
        exit 1
    fi
done
rm -f "$CLUSTER_DIR"/node*/rabbitmq.pid
if [ $PURGE = 1 ]; then
    rm -rf --one-file-system "$CLUSTER_DIR"
fi
log "stopped in $(elapsed "$t0") s"
