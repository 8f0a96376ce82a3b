#!/usr/bin/env bash
# Stop what testenv/up.sh started (by PID), remove the pid files and the env
# file. Idempotent. Keeps the cached chroot and venv, keys and certs.
#   --purge   also remove testenv/.run entirely (keys, certs, logs included)
set -euo pipefail

cd "$(dirname "$0")"
TESTENV_DIR=$(pwd -P)
RUN_DIR=$TESTENV_DIR/.run
CHROOT=$RUN_DIR/rootfs

PURGE=0
for a in "$@"; do
    case "$a" in
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) echo "down.sh: unknown argument: $a" >&2; exit 2 ;;
    esac
done

log() { printf 'down.sh: %s\n' "$*" >&2; }

[ -d "$RUN_DIR" ] || { log "nothing to do ($RUN_DIR does not exist)"; exit 0; }

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# every process whose root is our chroot mount point: the broker's sh wrapper,
# beam.smp, erl_child_setup, inet_gethost, and epmd (which daemonizes and so
# leaves the broker's process tree)
chroot_pids() {
    local p pid
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = "$$" ] && continue
        [ "$(readlink "$p/root" 2>/dev/null)" = "$CHROOT" ] && echo "$pid"
    done
    return 0
}

wait_gone() { # timeout_s pid...
    local t=$1; shift
    local deadline=$(( $(date +%s) + t )) p any
    while :; do
        any=0
        for p in "$@"; do alive "$p" && any=1; done
        [ $any = 0 ] && return 0
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

# --- relay -----------------------------------------------------------------
if [ -f "$RUN_DIR/relay.pid" ]; then
    pid=$(cat "$RUN_DIR/relay.pid")
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
            tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'amqp-sasl-relay\.py'; then
        log "stopping relay (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone 5 "$pid" || { kill -KILL "$pid" 2>/dev/null || true; wait_gone 5 "$pid" || true; }
    fi
    rm -f "$RUN_DIR/relay.pid"
fi

# --- broker ----------------------------------------------------------------
main_pid=""
if [ -f "$RUN_DIR/rabbitmq.pid" ]; then
    main_pid=$(cat "$RUN_DIR/rabbitmq.pid")
    # only ours if it is still inside our chroot (guards against PID reuse)
    if [ -n "$main_pid" ] && [ "$(readlink "/proc/$main_pid/root" 2>/dev/null)" != "$CHROOT" ]; then
        main_pid=""
    fi
fi
mapfile -t pids < <({ [ -n "$main_pid" ] && echo "$main_pid"; chroot_pids; } | sort -un)
if [ -n "$main_pid" ] || [ ${#pids[@]} -gt 0 ]; then
    # 1) graceful: TERM the main pid (the rabbitmq-server sh wrapper forwards
    #    it to beam.smp) or, without it, beam.smp itself; the VM then shuts
    #    down its helper ports (memsup, cpu_sup, inet_gethost) by itself.
    #    epmd is left for step 2.
    beam=()
    for p in "${pids[@]}"; do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = beam.smp ] && beam+=("$p")
    done
    first=(${main_pid:+"$main_pid"} "${beam[@]}")
    if [ ${#first[@]} -gt 0 ]; then
        log "stopping rabbitmq-server (pids ${first[*]})"
        kill -TERM ${main_pid:+"$main_pid"} 2>/dev/null || kill -TERM "${beam[@]}" 2>/dev/null || true
        if ! wait_gone 30 "${first[@]}"; then
            log "broker did not stop within 30 s, killing"
            kill -KILL "${first[@]}" 2>/dev/null || true
            wait_gone 5 "${first[@]}" || true
        fi
    fi
    # 2) epmd and anything else still rooted in the chroot
    mapfile -t rest < <(chroot_pids)
    if [ ${#rest[@]} -gt 0 ]; then
        log "stopping remaining chroot processes (pids ${rest[*]})"
        kill -TERM "${rest[@]}" 2>/dev/null || true
        if ! wait_gone 5 "${rest[@]}"; then
            kill -KILL "${rest[@]}" 2>/dev/null || true
            wait_gone 5 "${rest[@]}" || true
        fi
    fi
    mapfile -t left < <(chroot_pids)
    if [ ${#left[@]} -gt 0 ]; then
        log "ERROR: processes still running in the chroot: ${left[*]}"
        exit 1
    fi
fi
rm -f "$RUN_DIR/rabbitmq.pid"

# --- gpg-agents started for our gpg homes ------------------------------------
for home in "$RUN_DIR/gnupg" "$RUN_DIR/gnupg-passphrase"; do
    if [ -d "$home" ] && command -v gpgconf >/dev/null; then
        GNUPGHOME=$home gpgconf --kill all 2>/dev/null || true
    fi
done

rm -f "$RUN_DIR"/*.pid "$RUN_DIR/env" "$RUN_DIR/env.tmp"

if [ $PURGE = 1 ]; then
    log "purging $RUN_DIR"
    # the chroot mount point only ever had mounts inside the broker's private
    # mount namespace; refuse to recurse if one is visible here anyway
    if grep -qF " $CHROOT" /proc/self/mounts; then
        log "ERROR: $CHROOT is mounted in this namespace; not purging"
        exit 1
    fi
    rm -rf --one-file-system "$RUN_DIR"
fi
log "stopped"
