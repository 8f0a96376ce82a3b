#!/usr/bin/env bash
# Runs the whole test suite against the real broker: installs build dependencies, brings the test environment
# up (idempotent), runs every test with cargo nextest, and prints the figures the tests measure.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for p in libgpgme-dev pkg-config gnupg skopeo curl; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

testenv/up.sh
cargo nextest run --no-fail-fast --success-output final "$@"
