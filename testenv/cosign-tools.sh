#!/usr/bin/env bash
# Independent cosign tools for the interop tests: Debian 13 ("trixie")'s cosign 2.5 and skopeo 1.18, whose
# sigstore support works (Debian 12's skopeo has it patched out). Both live in a cached trixie chroot of their
# own, $CACHE_DIR/trixie-cosign, made once with mmdebstrap like up.sh's broker chroot and never written to
# afterwards (the broker's trixie-rabbitmq tree is not touched).
#
#   testenv/cosign-tools.sh            builds the chroot when missing, then prints two lines:
#                                        SIGNBUS_TEST_COSIGN=<path of the cosign binary>
#                                        SIGNBUS_TEST_COSIGN_ROOTFS=<the chroot, for skopeo: chroot it skopeo …>
#
# cosign is a Go binary that needs only libc: it runs on Debian 12 straight from the chroot's /usr/bin. skopeo
# needs the chroot's libraries and /etc/containers, so run it with `chroot <rootfs> skopeo …` (bind-mount what
# it must read, or pass files through the chroot's /tmp in a private copy or mount namespace).
set -euo pipefail

cd "$(dirname "$0")"
CACHE_DIR=${SIGNBUS_TESTENV_CACHE:-/var/cache/signbus-testenv}
ROOTFS=$CACHE_DIR/trixie-cosign
PKGS=(cosign skopeo)

log() { printf 'cosign-tools.sh: %s\n' "$*" >&2; }
die() { printf 'cosign-tools.sh: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap)"

# The Debian archive apt on this machine already uses (as up.sh finds it), unless SIGNBUS_DEBIAN_MIRROR is set.
debian_mirror() {
    if [ -n "${SIGNBUS_DEBIAN_MIRROR:-}" ]; then echo "$SIGNBUS_DEBIAN_MIRROR"; return; fi
    local u
    for u in $(
        shopt -s nullglob
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] && sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1=="deb"{print $2}'
        done
        for f in /etc/apt/sources.list.d/*.sources; do
            awk 'BEGIN{IGNORECASE=1} /^[[:space:]]*#/{next} /^URIs:/{for(i=2;i<=NF;i++) print $i}' "$f"
        done
    ); do
        u=${u%/}
        case "$u" in http://*/debian|https://*/debian) echo "$u"; return ;; esac
    done
    return 1
}

built() { [ -x "$ROOTFS/usr/bin/cosign" ] && [ -f "$ROOTFS/etc/signbus-testenv/cosign.version" ]; }

build() {
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.cosign-build.lock"
    flock 9
    if built; then exec 9>&-; return 0; fi
    command -v mmdebstrap >/dev/null || die "mmdebstrap missing: run testenv/deps.sh run"
    local d
    for d in "$CACHE_DIR"/.trixie-cosign.build.*; do
        [ -e "$d" ] || continue
        grep -qF " $d" /proc/self/mounts || rm -rf --one-file-system "$d"
    done
    local mirror; mirror=$(debian_mirror) || die "no Debian mirror in /etc/apt/sources.list*; set SIGNBUS_DEBIAN_MIRROR"
    local tmp; tmp=$(mktemp -d "$CACHE_DIR/.trixie-cosign.build.XXXXXX")
    log "building trixie chroot with ${PKGS[*]} from $mirror (one-off, ~1-2 min)"
    local inc; inc=$(IFS=,; echo "${PKGS[*]}")
    if ! mmdebstrap --quiet --variant=apt --include="$inc" trixie "$tmp/root" "$mirror" >"$tmp.log" 2>&1; then
        cat "$tmp.log" >&2
        grep -qF " $tmp" /proc/self/mounts || rm -rf --one-file-system "$tmp" "$tmp.log"
        die "mmdebstrap failed (log above)"
    fi
    rm -f "$tmp.log"
    mkdir -p "$tmp/root/etc/signbus-testenv"
    local p
    for p in "${PKGS[@]}"; do
        chroot "$tmp/root" dpkg-query -W -f='${Version}\n' "$p" >"$tmp/root/etc/signbus-testenv/$p.version"
    done
    printf 'mirror=%s\nbuilt=%s\n' "$mirror" "$(date -u +%FT%TZ)" >"$tmp/root/etc/signbus-testenv/build.info"
    chmod 755 "$tmp/root"
    # Atomic switch: the final name only ever points at a complete tree.
    [ -e "$ROOTFS" ] && mv "$ROOTFS" "$tmp/old"
    mv "$tmp/root" "$ROOTFS"
    rm -rf --one-file-system "$tmp"
    exec 9>&-
}

build
"$ROOTFS/usr/bin/cosign" version >/dev/null 2>&1 || die "$ROOTFS/usr/bin/cosign does not run on this host"
log "cosign $(cat "$ROOTFS/etc/signbus-testenv/cosign.version"), skopeo $(cat "$ROOTFS/etc/signbus-testenv/skopeo.version")"
echo "SIGNBUS_TEST_COSIGN=$ROOTFS/usr/bin/cosign"
echo "SIGNBUS_TEST_COSIGN_ROOTFS=$ROOTFS"
