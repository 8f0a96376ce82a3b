#!/usr/bin/env bash
# SIGKILLs every process of test cluster node N (1..3): no clean shutdown, its clients see their connections
# reset and the other nodes see it vanish. With --restart, starts it again with its data and returns once it has
# rejoined the cluster. Prints how long the node was down to stderr.
# Usage: testenv/cluster-kill-node.sh N [--restart]
set -euo pipefail
cd "$(dirname "$0")"
TESTENV_DIR=$(pwd -P)
# shellcheck source=testenv/cluster-lib.sh
. "$TESTENV_DIR/cluster-lib.sh"
log() { printf 'cluster-kill-node.sh: %s\n' "$*" >&2; }

n=${1:-}
case "$n" in 1|2|3) ;; *) echo "usage: $0 N [--restart]   (N = 1, 2 or 3)" >&2; exit 2 ;; esac
t0=$(date +%s.%N)
mapfile -t pids < <(node_pids "$n")
[ ${#pids[@]} -gt 0 ] || { log "node $n is not running"; exit 1; }
kill_hard "${pids[@]}" || { log "node $n processes survived SIGKILL"; exit 1; }
log "killed node $n ($(node_name "$n"), ${#pids[@]} processes) in $(elapsed "$t0") s"
if [ "${2:-}" = --restart ]; then
    "$TESTENV_DIR/cluster-up.sh" --start-node "$n"
    log "node $n down and back in $(elapsed "$t0") s"
fi
