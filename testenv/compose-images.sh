#!/usr/bin/env bash
# Makes, without a container registry, the base images the Dockerfile and docker-compose.yml name, in podman's
# local storage under their standard names:
#
#   docker.io/library/debian:bookworm-slim          mmdebstrap --variant=apt bookworm
#   docker.io/library/rust:1-bookworm               the same plus gcc/libc6-dev/pkg-config and this machine's
#                                                   rustup toolchain (rustc/cargo, without docs) on PATH
#   docker.io/library/rabbitmq:4.0-management       Debian 13 (trixie) rabbitmq-server, management plugin
#                                                   enabled, running in the foreground as user rabbitmq
#
#   testenv/compose-images.sh          (root; podman; mmdebstrap)
#
# The three are made in parallel. Each root filesystem is cached as a tarball in ${SIGNBUS_TESTENV_CACHE:-/var/cache/signbus-testenv}/compose/
# (written to a temp name, then renamed, so an interrupted build is never reused). An image whose label
# signbus.testenv.recipe matches what this script would build is kept; otherwise it is imported from the
# cached tarball, which is built first if missing. The recipe covers the suite, the package list, the image
# settings and, for the rust image, `rustc -V` of the toolchain, so a new toolchain means a new image.
set -euo pipefail
cd "$(dirname "$0")"

CACHE_DIR=${SIGNBUS_TESTENV_CACHE:-/var/cache/signbus-testenv}/compose
MIRROR=${SIGNBUS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The toolchain this machine's `rustc` runs (its sysroot), or SIGNBUS_COMPOSE_TOOLCHAIN=<a toolchain directory>.
TOOLCHAIN=${SIGNBUS_COMPOSE_TOOLCHAIN:-$(rustc --print sysroot 2>/dev/null || true)}
PODMAN=${PODMAN:-podman}

log() { printf 'compose-images.sh: %s\n' "$*" >&2; }
die() { printf 'compose-images.sh: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap)"
command -v mmdebstrap >/dev/null || die "mmdebstrap missing (testenv/deps.sh compose)"
mkdir -p "$CACHE_DIR"

# build_image NAME SUITE PACKAGES CHANGES... -- HOOK
#   NAME: the image name; SUITE: Debian suite; PACKAGES: comma-separated --include list;
#   CHANGES: podman import --change instructions; HOOK: an mmdebstrap --customize-hook ("" for none).
#   EXTRA_RECIPE (env): anything else the result depends on.
build_image() {
    local name=$1 suite=$2 packages=$3 hook=$4; shift 4
    local changes=("$@")
    local recipe
    recipe=$(printf '%s\n' "v1" "$suite" "$MIRROR" "$packages" "$hook" "${changes[@]}" "${EXTRA_RECIPE:-}" \
        | sha256sum | cut -c1-16)
    local have
    have=$("$PODMAN" image inspect --format '{{index .Labels "signbus.testenv.recipe"}}' "$name" 2>/dev/null || true)
    if [ "$have" = "$recipe" ]; then
        log "$name: up to date (recipe $recipe)"
        return 0
    fi
    local base; base=$(printf '%s' "$name" | tr '/:' '__')
    local file=$CACHE_DIR/$base-$recipe.tar
    if [ ! -s "$file" ]; then
        rm -f "$CACHE_DIR/.$base-"*.tar.build.* 2>/dev/null || true
        local tmp=$CACHE_DIR/.$(basename "$file").build.$$
        log "$name: mmdebstrap $suite with $packages (one-off)"
        local args=(--quiet --variant=apt --include="$packages" --format=tar)
        [ -n "$hook" ] && args+=(--customize-hook="$hook")
        if ! mmdebstrap "${args[@]}" "$suite" "$tmp" \
                "deb $MIRROR $suite main" >"$tmp.log" 2>&1; then
            cat "$tmp.log" >&2
            rm -f "$tmp" "$tmp.log"
            die "mmdebstrap for $name failed (log above)"
        fi
        rm -f "$tmp.log"
        mv "$tmp" "$file"
        # Older recipes of the same image are no longer used.
        local old
        for old in "$CACHE_DIR/$base"-*.tar; do
            [ "$old" = "$file" ] || rm -f "$old"
        done
    fi
    log "$name: importing $file"
    local c args=()
    for c in "${changes[@]}"; do args+=(--change "$c"); done
    "$PODMAN" import --quiet "${args[@]}" --change "LABEL signbus.testenv.recipe=$recipe" "$file" "$name" >/dev/null
}

PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The three are made in parallel (mostly downloads and unpacking).
pids=()

# debian:bookworm-slim: what the runtime stage starts from.
build_image docker.io/library/debian:bookworm-slim bookworm "ca-certificates" "" \
    "ENV PATH=$PATH_ENV" 'CMD ["bash"]' &
pids+=($!)

# rust:1-bookworm: the build stage. The official image has rustup in /usr/local/{rustup,cargo}; here the host's
# toolchain is copied to /usr/local/rustup/toolchains/<name> and its tools are linked from /usr/local/cargo/bin.
[ -n "$TOOLCHAIN" ] || die "no rustc on PATH (set SIGNBUS_COMPOSE_TOOLCHAIN to a toolchain directory)"
TC_DIR=$(cd "$TOOLCHAIN" && pwd -P) || die "no toolchain directory $TOOLCHAIN"
[ -x "$TC_DIR/bin/cargo" ] || die "$TC_DIR has no bin/cargo"
RUSTC_V=$("$TC_DIR/bin/rustc" -V)
log "rust toolchain: $TOOLCHAIN ($RUSTC_V)"
# This machine's local CAs (/usr/local/share/ca-certificates, e.g. of an HTTPS proxy in front of crates.io) are
# added, so cargo inside the build trusts what cargo on the host trusts.
LOCAL_CAS=/usr/local/share/ca-certificates
EXTRA_RECIPE="$RUSTC_V $(cd "$TC_DIR" && "$TC_DIR/bin/cargo" -V) $(cat "$LOCAL_CAS"/*.crt 2>/dev/null | sha256sum)" \
build_image docker.io/library/rust:1-bookworm bookworm \
    "ca-certificates,gcc,libc6-dev,make,pkg-config,git" \
    "if ls '$LOCAL_CAS'/*.crt >/dev/null 2>&1; then cp '$LOCAL_CAS'/*.crt \"\$1/usr/local/share/ca-certificates/\" && chroot \"\$1\" update-ca-certificates >/dev/null; fi && mkdir -p \"\$1/usr/local/rustup/toolchains/rust\" \"\$1/usr/local/cargo/bin\" && tar -C '$TC_DIR' --exclude=./share/doc -c . | tar -C \"\$1/usr/local/rustup/toolchains/rust\" -x && for b in \"\$1\"/usr/local/rustup/toolchains/rust/bin/*; do ln -s \"/usr/local/rustup/toolchains/rust/bin/\${b##*/}\" \"\$1/usr/local/cargo/bin/\${b##*/}\"; done" \
    "ENV PATH=/usr/local/cargo/bin:$PATH_ENV" "ENV CARGO_HOME=/usr/local/cargo" "ENV RUSTUP_HOME=/usr/local/rustup" \
    'CMD ["bash"]' &
pids+=($!)

# rabbitmq:4.0-management: Debian 13's rabbitmq-server. Like the official image: management enabled in
# /etc/rabbitmq/enabled_plugins (compose mounts testenv/compose/enabled_plugins over it), runs as rabbitmq with
# HOME=/var/lib/rabbitmq (the Erlang cookie the CLI tools, e.g. the healthcheck's rabbitmq-diagnostics, share
# with the server), node rabbit@<hostname>, AMQP 5672 and management 15672.
ENTRYPOINT_SH='#!/bin/sh
# signbus testenv: runs the RabbitMQ server in the foreground (its own process, not a child of this shell).
set -e
if [ "$1" = rabbitmq-server ]; then shift; exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"; fi
exec "$@"'
build_image docker.io/library/rabbitmq:4.0-management trixie "rabbitmq-server" \
    "printf '%s\n' '[rabbitmq_management].' >\"\$1/etc/rabbitmq/enabled_plugins\" && printf '%s\n' '$ENTRYPOINT_SH' >\"\$1/usr/local/bin/docker-entrypoint.sh\" && chmod 755 \"\$1/usr/local/bin/docker-entrypoint.sh\" && rm -f \"\$1/var/lib/rabbitmq/.erlang.cookie\" && chroot \"\$1\" chown rabbitmq:rabbitmq /etc/rabbitmq/enabled_plugins" \
    "ENV PATH=$PATH_ENV" "ENV HOME=/var/lib/rabbitmq" "ENV LANG=C.UTF-8" "USER rabbitmq" "WORKDIR /var/lib/rabbitmq" \
    "EXPOSE 5672" "EXPOSE 15672" 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' 'CMD ["rabbitmq-server"]' &
pids+=($!)

failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[ "$failed" = 0 ] || die "an image could not be made (see above)"
