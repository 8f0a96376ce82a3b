#!/usr/bin/env bash
# Kills the test broker hard (SIGKILL to every process in its chroot: no clean shutdown, connections reset), then
# starts it again with its data kept (durable queues and persistent messages survive), and waits until it is
# ready. For tests that prove nothing is lost when the broker dies; the relay and everything else stay up.
# Usage: testenv/restart-broker.sh [seconds to stay down, default 1]
set -euo pipefail
cd "$(dirname "$0")"
RUN_DIR=$(pwd -P)/.run
CHROOT=$RUN_DIR/rootfs
down_for=${1:-1}

pids=()
for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$CHROOT" ] && pids+=("${p#/proc/}")
done
[ ${#pids[@]} -gt 0 ] || { echo "restart-broker.sh: no broker running in $CHROOT" >&2; exit 1; }
kill -KILL "${pids[@]}" 2>/dev/null || true
for _ in $(seq 1 100); do
    alive=0
    for p in "${pids[@]}"; do [ -d "/proc/$p" ] && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
done
echo "restart-broker.sh: killed ${#pids[@]} broker processes; down for ${down_for}s" >&2
sleep "$down_for"
SIGNBUS_KEEP_BROKER_DATA=1 ./up.sh >&2
