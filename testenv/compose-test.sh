#!/usr/bin/env bash
# docker-compose.yml's `rabbitmq` profile for real, with podman (Debian 12: podman 4.3 + docker-compose 1.29 on
# podman's Docker-compatible API socket), on a machine without a container registry or docker engine:
#
#   1. base images made locally (testenv/compose-images.sh: debian:bookworm-slim, rust:1-bookworm with this
#      machine's toolchain, rabbitmq:4.0-management from Debian 13's rabbitmq-server; cached)
#   2. the signbus image built from the Dockerfile by `docker-compose build`
#   3. a throwaway ed25519 key (gpg home owned by uid 10001, mode 700) and generated copies of
#      deploy/compose/server*.yaml holding its fingerprint
#   4. `docker-compose --profile rabbitmq up -d` on free loopback ports (not testenv's 5672/15672/9464)
#   5. every service's healthcheck reports healthy (podman inspect), /readyz is 200 on both servers' ports,
#      both servers consume signbus.requests (management API)
#   6. image references signed through the broker by the host-built `signbus msg-container-sign`, each
#      signature verified by `skopeo standalone-verify`; both servers signed some
#   7. `docker-compose stop signbus` (SIGTERM): the server logs its drain and "stopped" and exits 0; the
#      AMQP 0-9-1 server still signs
#   8. teardown: compose down -v, the podman API service stopped (also on failure, by trap)
#
# Podman without systemd never runs healthchecks by itself (it schedules them as systemd timers; here
# `podman run` logs "unable to get systemd connection to add healthchecks"), so this script runs each
# container's healthcheck at that container's interval with `podman healthcheck run`, as the timer would.
#
#   testenv/compose-test.sh     (root; installs `testenv/deps.sh compose` if missing)
#
# Environment: CARGO_TARGET_DIR (the host build of signbus; default ./target), SIGNBUS_TESTENV_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)

T0=$(date +%s)
STAGE_T=$T0
STAGE_NAME=""
TIMINGS=()
stage() {
    local now; now=$(date +%s)
    [ -n "$STAGE_NAME" ] && TIMINGS+=("$(printf '%4ss  %s' $((now - STAGE_T)) "$STAGE_NAME")")
    STAGE_T=$now
    STAGE_NAME=$1
    printf '\n==> [%ss] %s\n' $((now - T0)) "$1"
}
die() { printf '\ncompose-test.sh: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (podman, mmdebstrap)"

stage "0. packages (testenv/deps.sh build run compose)"
testenv/deps.sh build run compose

WORK=$(mktemp -d /tmp/signbus-compose-test.XXXXXX)
PROJECT=signbus-compose-test-$$
export COMPOSE_PROJECT_NAME=$PROJECT
export COMPOSE_FILE=$ROOT/docker-compose.yml
export COMPOSE_PROFILES=rabbitmq         # docker-compose 1.29 reads it; --profile is passed as well
COMPOSE=(docker-compose --profile rabbitmq)

# Podman as measured on this kind of machine: runc (crun fails on setrlimit), cgroupfs (no systemd), no
# default ulimits, events to a file (no journald). Only this script's podman processes read this file.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$WORK/containers.conf

PODMAN_SVC_PID=""
HEALTH_PID=""
FAILED=1
cleanup() {
    local rc=$?
    set +e
    if [ "$FAILED" = 1 ] && [ -S "$WORK/podman.sock" ]; then
        echo "--- compose ps / logs (last 60 lines per service) ---" >&2
        "${COMPOSE[@]}" ps >&2
        "${COMPOSE[@]}" logs --no-color --tail 60 >&2
    fi
    [ -n "$HEALTH_PID" ] && kill "$HEALTH_PID" 2>/dev/null && wait "$HEALTH_PID" 2>/dev/null
    if [ "$FAILED" = 1 ] && [ -S "$WORK/podman.sock" ]; then
        echo "==> teardown: docker-compose down -v" >&2
        "${COMPOSE[@]}" down -v --remove-orphans -t 10 >/dev/null 2>&1 || echo "compose down failed" >&2
    fi
    # Whatever compose left (it should be nothing): containers, volumes and the network of this project.
    podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" | xargs -r podman rm -f -t 0 >/dev/null 2>&1
    podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r podman volume rm -f >/dev/null 2>&1
    podman network ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r podman network rm -f >/dev/null 2>&1
    [ -n "$PODMAN_SVC_PID" ] && kill "$PODMAN_SVC_PID" 2>/dev/null && wait "$PODMAN_SVC_PID" 2>/dev/null
    rm -rf "$WORK"
    [ "$rc" = 0 ] || echo "compose-test.sh: exit $rc" >&2
}
trap cleanup EXIT

stage "1. podman's Docker API on $WORK/podman.sock (for docker-compose)"
podman system service --time=0 "unix://$WORK/podman.sock" >"$WORK/podman-service.log" 2>&1 &
PODMAN_SVC_PID=$!
export DOCKER_HOST=unix://$WORK/podman.sock
for _ in $(seq 100); do curl -fsS --unix-socket "$WORK/podman.sock" http://d/_ping >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS --unix-socket "$WORK/podman.sock" http://d/_ping >/dev/null || { cat "$WORK/podman-service.log"; die "podman service did not answer"; }
echo "$(podman --version), $(docker-compose version --short 2>/dev/null || docker-compose --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}')"

stage "2. base images (testenv/compose-images.sh)"
testenv/compose-images.sh

stage "3. the signbus image from the Dockerfile (docker-compose build signbus)"
"${COMPOSE[@]}" build signbus >"$WORK/build.log" 2>&1 || { tail -50 "$WORK/build.log"; die "image build failed"; }
grep -E 'Finished|Successfully tagged' "$WORK/build.log" || true
podman image inspect --format 'signbus:local {{.Id}} {{.Size}} bytes' signbus:local

stage "4. throwaway signing key and server configs"
GNUPG=$WORK/gnupg
install -d -m 700 "$GNUPG"
GNUPGHOME=$GNUPG gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-gen-key 'signbus compose test <compose-test@signbus.invalid>' ed25519 sign never 2>/dev/null
FPR=$(GNUPGHOME=$GNUPG gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '/^fpr/ && !found {print $10; found = 1}')
[ ${#FPR} = 40 ] || die "no fingerprint for the generated key"
GNUPGHOME=$GNUPG gpg --batch --export "$FPR" >"$WORK/signing.pub.gpg"
GNUPGHOME=$GNUPG gpgconf --kill all
# The servers run as uid 10001 (user signbus in the image) and gpg wants its home private.
chown -R 10001:10001 "$GNUPG"
chmod 700 "$GNUPG"
export SIGNBUS_GNUPGHOME=$GNUPG
mkdir -m 755 "$WORK/config"
for f in server.yaml server-amqp091.yaml; do
    sed "s/REPLACE-WITH-THE-SIGNING-KEY-FINGERPRINT/$FPR/" "deploy/compose/$f" >"$WORK/config/$f"
    grep -q "$FPR" "$WORK/config/$f" || die "no key id placeholder in deploy/compose/$f"
    chmod 644 "$WORK/config/$f"
done
export SIGNBUS_COMPOSE_CONFIG_DIR=$WORK/config
echo "key $FPR (ed25519), gpg home $GNUPG (uid 10001, 700), configs in $WORK/config"

# Five free loopback ports, so the stack never meets testenv's broker (5672, 15672, ...) or the demo (9464).
read -r SIGNBUS_COMPOSE_AMQP_PORT SIGNBUS_COMPOSE_MGMT_PORT SIGNBUS_COMPOSE_METRICS_PORT \
    SIGNBUS_COMPOSE_METRICS_PORT_AMQP091 SIGNBUS_COMPOSE_CONSOLE_PORT < <(python3 - <<'PY'
import socket
socks = []
for _ in range(5):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
)
export SIGNBUS_COMPOSE_AMQP_PORT SIGNBUS_COMPOSE_MGMT_PORT SIGNBUS_COMPOSE_METRICS_PORT \
    SIGNBUS_COMPOSE_METRICS_PORT_AMQP091 SIGNBUS_COMPOSE_CONSOLE_PORT
echo "ports: AMQP $SIGNBUS_COMPOSE_AMQP_PORT, management $SIGNBUS_COMPOSE_MGMT_PORT," \
    "metrics $SIGNBUS_COMPOSE_METRICS_PORT (AMQP 1.0 server), $SIGNBUS_COMPOSE_METRICS_PORT_AMQP091 (AMQP 0-9-1 server)"

# The systemd timer's job: each container's healthcheck, at its own interval.
run_healthchecks() {
    declare -A due=()
    local id iv now
    while :; do
        now=$(date +%s)
        for id in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null); do
            if [ -z "${due[$id]:-}" ]; then
                iv=$(podman inspect --format '{{if .Config.Healthcheck}}{{.Config.Healthcheck.Interval.Seconds}}{{end}}' "$id" 2>/dev/null || true)
                [ -n "$iv" ] || { due[$id]=never; continue; }
                due[$id]=$now
            fi
            [ "${due[$id]}" = never ] && continue
            if [ "$now" -ge "${due[$id]}" ]; then
                iv=$(podman inspect --format '{{.Config.Healthcheck.Interval.Seconds}}' "$id" 2>/dev/null || echo 5)
                due[$id]=$((now + ${iv%.*}))
                podman healthcheck run "$id" >/dev/null 2>&1 || true
            fi
        done
        sleep 1
    done
}
run_healthchecks &
HEALTH_PID=$!

stage "5. docker-compose --profile rabbitmq up -d (waits for rabbitmq to be healthy)"
"${COMPOSE[@]}" up -d --no-build

stage "6. healthchecks: every service healthy (podman inspect .State.Health.Status)"
wait_healthy() {
    local svc=$1 id status=""
    id=$("${COMPOSE[@]}" ps -q "$svc")
    [ -n "$id" ] || die "no container for service $svc"
    for _ in $(seq 120); do
        status=$(podman inspect --format '{{.State.Health.Status}}' "$id")
        [ "$status" = healthy ] && break
        [ "$status" = unhealthy ] && break
        sleep 1
    done
    local test; test=$(podman inspect --format '{{json .Config.Healthcheck.Test}}' "$id")
    echo "$svc ($id): $status; healthcheck $test"
    # The check must reach the container as written (podman 4.3's API splits ["CMD", …] arguments at spaces).
    python3 -c 'import json, sys; t = json.loads(sys.argv[1]); sys.exit(not (t[0] == "CMD-SHELL" and len(t) == 2 or " " not in "".join(t[1:])))' "$test" \
        || die "$svc's healthcheck arrived mangled: $test"
    [ "$status" = healthy ] || { podman inspect --format '{{json .State.Health}}' "$id"; die "$svc is $status"; }
}
for svc in rabbitmq signbus signbus-amqp091; do wait_healthy "$svc"; done

stage "7. /readyz on both servers' published ports; both consume signbus.requests"
for port in "$SIGNBUS_COMPOSE_METRICS_PORT" "$SIGNBUS_COMPOSE_METRICS_PORT_AMQP091"; do
    code=$(curl -sS -o "$WORK/readyz" -w '%{http_code}' "http://127.0.0.1:$port/readyz")
    echo "http://127.0.0.1:$port/readyz -> $code $(head -c 200 "$WORK/readyz")"
    [ "$code" = 200 ] || die "/readyz on $port answered $code"
done
MGMT=http://127.0.0.1:$SIGNBUS_COMPOSE_MGMT_PORT
# The management API's numbers lag by a second or two.
wait_consumers() {
    local want=$1 n=""
    for _ in $(seq 30); do
        n=$(curl -fsS -u guest:guest "$MGMT/api/queues/%2F/signbus.requests" \
            | python3 -c 'import json, sys; print(json.load(sys.stdin).get("consumers", ""))')
        [ "$n" = "$want" ] && break
        sleep 0.5
    done
    echo "signbus.requests has $n consumer(s) (management API)"
    [ "$n" = "$want" ] || die "expected $want consumers on signbus.requests, got $n"
}
wait_consumers 2

stage "8. the host-built requester (cargo build --bin signbus)"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CARGO_TARGET_DIR=$TARGET nice -n 10 cargo build --quiet --bin signbus
BIN=$TARGET/debug/signbus
cat >"$WORK/client.yaml" <<EOF
msg_signer:
  messaging_brokers: ["amqp://127.0.0.1:$SIGNBUS_COMPOSE_AMQP_PORT"]
  messaging_cert_key: ""
  messaging_ca_cert: ""
  topic_send_to: "/queues/signbus.requests"
  topic_listen_to: "/topic/signbus.reply.{creator}.{task_id}"
  environment: "test"
  service: "pubtools-sign"
  timeout: 20
  retries: 3
  send_retries: 2
  message_id_key: "request_id"
EOF
VERIFY_HOME=$WORK/verify-gnupg
install -d -m 700 "$VERIFY_HOME"
GNUPGHOME=$VERIFY_HOME gpg --batch --quiet --import "$WORK/signing.pub.gpg"

sign_and_verify() {
    local n=$1 ref=$2 manifest=$WORK/manifest-$1.json
    printf '{"schemaVersion": 2, "compose-test": "%s-%s"}' "$$" "$n" >"$manifest"
    local digest=sha256:$(sha256sum "$manifest" | cut -d' ' -f1)
    "$BIN" msg-container-sign --config-file "$WORK/client.yaml" --requester signbus-compose-test \
        --signing-key "$FPR" --task-id "compose-$$-$n" --digest "$digest" --reference "$ref" \
        --raw --log-level WARNING >"$WORK/signature-$n.b64"
    base64 -d "$WORK/signature-$n.b64" >"$WORK/signature-$n"
    GNUPGHOME=$VERIFY_HOME skopeo standalone-verify "$manifest" "$ref" "$FPR" "$WORK/signature-$n" >/dev/null \
        || die "skopeo standalone-verify rejected signature $n"
    echo "signed $ref@$digest: $(stat -c %s "$WORK/signature-$n")-byte signature, verified by skopeo"
}
signed_by() {   # signed container signatures a server counted (its /metrics)
    curl -fsS "http://127.0.0.1:$1/metrics" \
        | awk '/^signbus_requests_total\{/ && /outcome="signed"/ {s += $NF} END {print s + 0}'
}

stage "9. sign 4 image references through the broker; skopeo standalone-verify each"
for i in 1 2 3 4; do sign_and_verify "$i" "registry.example.com/compose-test/app:$i"; done
A=$(signed_by "$SIGNBUS_COMPOSE_METRICS_PORT")
B=$(signed_by "$SIGNBUS_COMPOSE_METRICS_PORT_AMQP091")
echo "signed by the AMQP 1.0 server: $A, by the AMQP 0-9-1 server: $B"
[ $((A + B)) = 4 ] || die "the servers counted $((A + B)) signatures, 4 were made"
[ "$A" -gt 0 ] && [ "$B" -gt 0 ] || die "one server signed nothing (the broker spreads requests over both consumers)"

stage "10. SIGTERM to the AMQP 1.0 server (docker-compose stop signbus): drains, exits 0"
SB=$("${COMPOSE[@]}" ps -q signbus)
"${COMPOSE[@]}" stop signbus
podman inspect --format '{{.State.Status}} exit={{.State.ExitCode}}' "$SB"
[ "$(podman inspect --format '{{.State.ExitCode}}' "$SB")" = 0 ] || die "signbus exited non-zero"
podman logs "$SB" >"$WORK/signbus.log" 2>&1
grep -F 'shutdown requested: no new requests; draining' "$WORK/signbus.log" || die "no drain in the signbus log"
grep -F '"stopped"' "$WORK/signbus.log" || die "signbus did not log stopped"
wait_consumers 1
sign_and_verify 5 "registry.example.com/compose-test/app:after-stop"

stage "11. teardown (docker-compose down -v)"
kill "$HEALTH_PID" 2>/dev/null; wait "$HEALTH_PID" 2>/dev/null || true
HEALTH_PID=""
"${COMPOSE[@]}" down -v --remove-orphans -t 45
left=$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
[ "$left" = 0 ] || die "$left containers left after compose down"
FAILED=0
stage "done"

printf '\ncompose-test.sh: passed in %ss\n' $(($(date +%s) - T0))
printf '%s\n' "${TIMINGS[@]}"
