#!/usr/bin/env bash
# Runs the whole test suite against the real broker: installs build dependencies, brings the test environment
# up (idempotent), runs every test with cargo nextest, then runs the broker-facing tests again for each other
# protocol combination (server × requester over AMQP 1.0 and AMQP 0-9-1) and for the in-process signing backend.
# Prints the figures tests measure.
set -euo pipefail
cd "$(dirname "$0")/.."

testenv/deps.sh build run test
testenv/up.sh
# Debian 13's cosign 2.5 and skopeo 1.18 (a cached trixie chroot of their own): the independent implementation the
# cosign tests check signbus against. Exports SIGNBUS_TEST_COSIGN and SIGNBUS_TEST_COSIGN_ROOTFS.
cosign_tools=$(testenv/cosign-tools.sh)
eval "export $(echo "$cosign_tools" | tr '\n' ' ')"
# The cluster tests start a 3-node RabbitMQ cluster (testenv/cluster-up.sh); it is stopped when this script ends,
# however it ends.
trap 'testenv/cluster-down.sh || true' EXIT

# The integration tests are one binary, `it` (tests/it/main.rs), with one module per file; nextest's `test()`
# matches a test's full path (`container_signing_end_to_end::signs_...`), so rows select tests by module.
# Tests that kill and restart the shared broker run alone, after the others.
RESTARTS='binary(it) & test(/^broker_restart_loses_nothing::/)'
# Tests on a 3-node cluster of their own that kill its nodes: alone too (they also serialize themselves), for the
# first protocol row and for AMQP 0-9-1.
CLUSTER='binary(it) & test(/^cluster_failover_loses_nothing::/)'

# 1. Everything, with server and requester on AMQP 1.0.
SIGNBUS_TEST_PROTOCOL=amqp1 SIGNBUS_TEST_REQUESTER_PROTOCOL=amqp1 \
    cargo nextest run --no-fail-fast --success-output final -E "not ($RESTARTS | $CLUSTER)" "$@"
SIGNBUS_TEST_PROTOCOL=amqp1 SIGNBUS_TEST_REQUESTER_PROTOCOL=amqp1 \
    cargo nextest run --no-fail-fast --success-output final -E "$RESTARTS"
SIGNBUS_TEST_PROTOCOL=amqp1 SIGNBUS_TEST_REQUESTER_PROTOCOL=amqp1 \
    cargo nextest run --no-fail-fast --success-output final -E "$CLUSTER"

# 2. The same broker-facing tests over the other protocol combinations (one suite, parametrised).
BROKER_TESTS='binary(it) & test(/^(container|bad|cli|every|sigterm|sigkill|pubtools|metrics|logs|signed_images|topology|verify_agrees|authoriz|cross_type|signer_outage|partitioned|cosign_signatures_over)/)'
for combo in "amqp091 amqp091" "amqp1 amqp091" "amqp091 amqp1"; do
    set -- $combo
    echo "test.sh: server over $1, requester over $2" >&2
    SIGNBUS_TEST_PROTOCOL=$1 SIGNBUS_TEST_REQUESTER_PROTOCOL=$2 \
        cargo nextest run --no-fail-fast -E "$BROKER_TESTS"
    SIGNBUS_TEST_PROTOCOL=$1 SIGNBUS_TEST_REQUESTER_PROTOCOL=$2 \
        cargo nextest run --no-fail-fast --success-output final -E "$RESTARTS"
    if [ "$1 $2" = "amqp091 amqp091" ]; then
        SIGNBUS_TEST_PROTOCOL=$1 SIGNBUS_TEST_REQUESTER_PROTOCOL=$2 \
            cargo nextest run --no-fail-fast --success-output final -E "$CLUSTER"
    fi
done
testenv/cluster-down.sh

# 3. The broker-facing tests again with the in-process signing backend (keys from armored files, signed in the
# server process; SIGNBUS_TEST_BACKEND is honoured by tests/it/support), plus the passphrase-key tests, less the
# gpg-agent outage test (it runs the gpgme backend whatever the variable says). One protocol
# combination (AMQP 1.0 both sides, the default): the backend only changes the signer, and each extra row costs
# ~3-4 minutes of the 45 .ci/run may take.
echo "test.sh: in-process signing backend, server and requester over AMQP 1.0" >&2
SIGNBUS_TEST_BACKEND=in-process SIGNBUS_TEST_PROTOCOL=amqp1 SIGNBUS_TEST_REQUESTER_PROTOCOL=amqp1 \
    cargo nextest run --no-fail-fast -E "($BROKER_TESTS & not test(/^signer_outage/)) | (binary(it) & test(/^passphrase/))"

# Packaging and operations: the .deb installed, run as its unit runs and purged; alert rules and dashboard.
testenv/package-test.sh
testenv/alerts-test.sh
testenv/compose-test.sh   # docker-compose.yml's rabbitmq profile with podman: image build, healthchecks, signing, SIGTERM

# 4. The fuzz targets, each for a bounded time (SIGNBUS_FUZZ_SECONDS, default 30) from the checked-in seeds.
fuzz/run.sh
