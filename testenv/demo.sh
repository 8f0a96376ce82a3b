#!/usr/bin/env bash
# The main job in one command: a broker, a signbus server, an image reference signed through the broker, and
# the signature verified by skopeo. Prints each step. Leaves the broker up (testenv/down.sh stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

step "0. system packages (testenv/deps.sh: libgpgme-dev, gnupg, skopeo, …)"
testenv/deps.sh build run

step "1. test environment: RabbitMQ 4.0 on 127.0.0.1, throwaway gpg keys, configs (testenv/up.sh)"
testenv/up.sh
# shellcheck disable=SC1091
source testenv/.run/env

step "2. build signbus"
cargo build --quiet
BIN=$PWD/target/debug/signbus
WORK=$(mktemp -d)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; wait "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

step "3. start the signing server: $BIN serve --config $SIGNBUS_SERVER_CONFIG"
"$BIN" serve --config "$SIGNBUS_SERVER_CONFIG" --log-format text >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do grep -q consuming "$WORK/server.log" && break; sleep 0.1; done
grep -q consuming "$WORK/server.log" || { cat "$WORK/server.log"; exit 1; }
echo "server $SERVER_PID is consuming"

step "4. an image manifest and its digest"
printf '{"schemaVersion": 2, "demo": "%s"}' "$(date +%s)" >"$WORK/manifest.json"
DIGEST=sha256:$(sha256sum "$WORK/manifest.json" | cut -d' ' -f1)
REF=registry.example.com/demo/app:1.0
echo "reference $REF at $DIGEST"

step "5. sign it through the broker (pubtools-sign compatible CLI)"
"$BIN" msg-container-sign --config-file "$SIGNBUS_CLIENT_CONFIG" --signing-key "$SIGNBUS_TEST_KEY" \
    --task-id "demo-$$" --digest "$DIGEST" --reference "$REF" --raw --log-level WARNING >"$WORK/signature.b64"
base64 -d "$WORK/signature.b64" >"$WORK/signature-1"
echo "got a $(stat -c %s "$WORK/signature-1")-byte OpenPGP signed message"

step "6. verify with skopeo standalone-verify (key $SIGNBUS_TEST_KEY)"
skopeo standalone-verify "$WORK/manifest.json" "$REF" "$SIGNBUS_TEST_KEY" "$WORK/signature-1"

step "7. what the server counted (curl $SIGNBUS_METRICS_URL/metrics, /readyz)"
curl -sS "$SIGNBUS_METRICS_URL/readyz"
curl -sS "$SIGNBUS_METRICS_URL/metrics" | grep -E '^signbus_(requests_total|build_info)' || true

step "done: signed and verified"
