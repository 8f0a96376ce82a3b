#!/usr/bin/env bash
# Builds the cargo-fuzz targets and runs each one for a bounded time from a scratch copy of its checked-in seed
# corpus (fuzz/corpus/<target>/ is never written to). Fails when any target crashes, panics, hangs or runs out
# of memory; the input that did it is kept under fuzz/artifacts/<target>/.
#
#   SIGNBUS_FUZZ_SECONDS    seconds per target (default 30)
#   SIGNBUS_FUZZ_TARGETS    space-separated targets to run (default: all of `cargo fuzz list`)
#   SIGNBUS_FUZZ_SANITIZER  none (default) or address; signbus has no unsafe code but zeroing a dropped passphrase, so the default buys
#                           more executions per second, and address is there for a longer local run
#
# cargo-fuzz passes nightly-only flags to rustc; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
seconds=${SIGNBUS_FUZZ_SECONDS:-30}
sanitizer=${SIGNBUS_FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1

if [ "$(cargo fuzz --version 2>/dev/null | head -n1)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "fuzz/run.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

started=$(date +%s)
cargo fuzz build --sanitizer "$sanitizer"
echo "fuzz/run.sh: built the fuzz targets in $(($(date +%s) - started)) s" >&2

targets=${SIGNBUS_FUZZ_TARGETS:-$(cargo fuzz list)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in $targets; do
    mkdir -p "$work/$t" artifacts/"$t"
    cp corpus/"$t"/* "$work/$t"/
    log="$work/$t.log"
    echo "fuzz/run.sh: $t for ${seconds}s from $(ls corpus/"$t" | wc -l) seed files" >&2
    if cargo fuzz run --sanitizer "$sanitizer" "$t" "$work/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | sed "s/^/  $t: /" >&2 || true
        echo "  $t: corpus grew to $(ls "$work/$t" | wc -l) files" >&2
    else
        failed+=("$t")
        echo "fuzz/run.sh: $t FAILED:" >&2
        grep -m1 -B1 -A8 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" >&2 || tail -n 40 "$log" >&2
        grep -E '^(SUMMARY|Base64):' "$log" >&2 || true
        echo "fuzz/run.sh: the failing input is under fuzz/artifacts/$t/:" >&2
        ls -l artifacts/"$t" >&2 || true
    fi
done
echo "fuzz/run.sh: ${seconds}s per target, $(($(date +%s) - started)) s in all"
echo "fuzz: $(($(wc -w <<<"$targets") - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: failed: ${failed[*]} (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer <target> fuzz/artifacts/<target>/<file>)" >&2
    exit 1
fi
