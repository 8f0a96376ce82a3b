#!/usr/bin/env bash
# Wall time of `signbus cosign-container-sign` for N (default 50) image references beside pubtools-sign 1.0.6's
# own cosign signer (`pubtools-sign-cosign-container-sign`, cosign_bin = Debian 13's cosign 2.5) for the same N,
# one run each, and the ratio. Both sign with the same key and the same config file (no transparency log, plain
# http), each against a fresh docker-registry on the same loopback port holding the same N small images, so both
# see the same references, digests and empty .sig tags.
#
#   bench/cosign.sh            needs: a release build (cargo build --release; CARGO_TARGET_DIR is honoured),
#                              /usr/bin/docker-registry, curl, testenv's pubtools-sign venv, and
#                              testenv/cosign-tools.sh (run as root; it builds its chroot once)
#   N=10 bench/cosign.sh       fewer references
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-50}
SIGNBUS=${SIGNBUS:-${CARGO_TARGET_DIR:-target}/release/signbus}
VENV=${PUBTOOLS_SIGN_VENV:-/var/cache/signbus-testenv/pubtools-sign-1.0.6-venv}
PUBTOOLS=$VENV/bin/pubtools-sign-cosign-container-sign
REGISTRY_BIN=/usr/bin/docker-registry

die() { printf 'bench/cosign.sh: %s\n' "$*" >&2; exit 1; }
[ -x "$SIGNBUS" ] || die "$SIGNBUS missing: cargo build --release first"
[ -x "$PUBTOOLS" ] || die "$PUBTOOLS missing: testenv/up.sh makes the pubtools-sign venv"
[ -x "$REGISTRY_BIN" ] || die "$REGISTRY_BIN missing: testenv/deps.sh installs docker-registry"
COSIGN=$(testenv/cosign-tools.sh | sed -n 's/^SIGNBUS_TEST_COSIGN=//p')
[ -x "$COSIGN" ] || die "no cosign from testenv/cosign-tools.sh"

WORK=$(mktemp -d)
REGISTRY_PID=
cleanup() {
    [ -n "$REGISTRY_PID" ] && kill "$REGISTRY_PID" 2>/dev/null && wait "$REGISTRY_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HOST=127.0.0.1:$PORT

# A fresh registry on $HOST with images $HOST/bench/app-i:v1 (i = 1..N), each a config blob and no layers.
fresh_registry() {
    if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID"; wait "$REGISTRY_PID" 2>/dev/null || true; fi
    rm -rf "$WORK/storage"
    printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
        "$WORK/storage" "$HOST" >"$WORK/registry.yml"
    "$REGISTRY_BIN" serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
    REGISTRY_PID=$!
    for _ in $(seq 100); do curl -sf "http://$HOST/v2/" >/dev/null && break; sleep 0.1; done
    kill -0 "$REGISTRY_PID" 2>/dev/null || die "docker-registry did not start: $(cat "$WORK/registry.log")"
    : >"$WORK/digests"
    local i config cdigest loc manifest
    for i in $(seq "$N"); do
        config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"bench\":$i}"
        cdigest=sha256:$(printf %s "$config" | sha256sum | cut -d' ' -f1)
        loc=$(curl -sfi -X POST "http://$HOST/v2/bench/app-$i/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
        curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "$config" "$loc&digest=$cdigest"
        manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cdigest\",\"size\":${#config}},\"layers\":[]}"
        curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$manifest" \
            "http://$HOST/v2/bench/app-$i/manifests/v1"
        printf 'sha256:%s\n' "$(printf %s "$manifest" | sha256sum | cut -d' ' -f1)" >>"$WORK/digests"
    done
}

export COSIGN_PASSWORD=bench
(cd "$WORK" && "$SIGNBUS" cosign-generate-key-pair --output-key-prefix bench 2>/dev/null)
cat >"$WORK/conf.yaml" <<EOF
cosign_signer:
  cosign_bin: $COSIGN
  upload_tlog: false
  allow_http_registry: true
  num_threads: 10
  log_level: error
EOF

args() {
    local i=0 d
    printf '%s\n' --config-file "$WORK/conf.yaml" --signing-key "$WORK/bench.key"
    while read -r d; do
        i=$((i + 1))
        printf '%s\n' --digest "$d" --reference "$HOST/bench/app-$i:v1"
    done <"$WORK/digests"
}

# Runs one signer over the N references; sets SECONDS_TAKEN to its wall time. Not run in a subshell, so the
# registry it starts stays known to the cleanup trap and to the next fresh_registry.
timed() {
    local name=$1; shift
    fresh_registry
    mapfile -t ARGS < <(args)
    local start end out
    start=$(date +%s.%N)
    out=$("$@" "${ARGS[@]}" 2>"$WORK/$name.err") || die "$name failed: $(cat "$WORK/$name.err")"
    end=$(date +%s.%N)
    grep -q '"status": "ok"' <<<"$out" || die "$name: $out"
    [ "$(grep -o 'Pushing signature to' <<<"$out" | wc -l)" = "$N" ] || die "$name signed fewer than $N: $out"
    SECONDS_TAKEN=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f\n", e - s }')
}

timed signbus "$SIGNBUS" cosign-container-sign
SIGNBUS_S=$SECONDS_TAKEN
timed pubtools-sign "$PUBTOOLS"
PUBTOOLS_S=$SECONDS_TAKEN
echo "cosign-container-sign, $N references, one key, num_threads 10, docker-registry on loopback ($(date -u +%Y-%m-%d)):"
echo "  signbus (native):                  ${SIGNBUS_S} s"
echo "  pubtools-sign 1.0.6 + cosign 2.5:  ${PUBTOOLS_S} s"
awk -v a="$PUBTOOLS_S" -v b="$SIGNBUS_S" 'BEGIN { printf "  ratio: signbus is %.1fx faster\n", a / b }'
