#!/usr/bin/env bash
# Ensure a cached Python venv with the real pubtools-sign client and print its
# path on stdout (logs go to stderr). Called by testenv/up.sh; can also be run
# on its own, e.g. to warm a CI cache.
#
#   ${SIGNBUS_TESTENV_CACHE:-/var/cache/signbus-testenv}/pubtools-sign-<ver>-venv
#
# Built with Debian's /usr/bin/python3 (not pyenv's), in place, under a lock;
# the marker file .complete is written last, so a venv without a matching
# marker (interrupted build, other python) is deleted and rebuilt. The cached
# path is a file read plus a readlink. python-qpid-proton has no wheels on
# PyPI, so the first build compiles it (needs gcc, headers, pkg-config and
# libssl-dev; without pkg-config/libssl-dev it silently builds without SSL and
# pubtools-sign then fails in proton.SSLDomain).
set -euo pipefail

PUBTOOLS_SIGN_VERSION=1.0.6           # pinned; pip resolves the rest
PYTHON=/usr/bin/python3
CACHE_DIR=${SIGNBUS_TESTENV_CACHE:-/var/cache/signbus-testenv}
VENV=$CACHE_DIR/pubtools-sign-$PUBTOOLS_SIGN_VERSION-venv
MARKER=$VENV/.complete
BUILD_LOG=$VENV.build.log
BUILD_PACKAGES=(python3 python3-venv python3-dev gcc libc6-dev pkg-config libssl-dev)
TOOLS=(pubtools-sign-msg-container-sign pubtools-sign-msg-clear-sign pubtools-sign-msg-blob-sign pubtools-sign-cosign-container-sign)

log() { printf 'pubtools-venv.sh: %s\n' "$*" >&2; }
die() { printf 'pubtools-venv.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# What the venv was built for. The venv's python is a symlink to
# /usr/bin/python3, i.e. to python3.X: a new minor version needs a rebuild.
marker_key() {
    printf 'pubtools-sign==%s python=%s\n' "$PUBTOOLS_SIGN_VERSION" "$(readlink -f "$PYTHON")"
}

venv_ok() {
    [ -f "$MARKER" ] && [ -x "$VENV/bin/python" ] &&
        [ "$(head -n 1 "$MARKER")" = "$(marker_key)" ]
}

ensure_build_packages() {
    local missing=() p
    for p in "${BUILD_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); install them or run as root"
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# Run with a clean Python environment: no pyenv/virtualenv/user-site leaks.
# pip's own settings (PIP_INDEX_URL, PIP_CERT, pip.conf, ...) are kept.
pyenv_clean() {
    env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP -u PYTHONUSERBASE \
        -u PYTHONDONTWRITEBYTECODE -u VIRTUAL_ENV -u PIP_USER -u PIP_TARGET \
        -u PIP_PREFIX -u PIP_REQUIRE_VIRTUALENV PYTHONNOUSERSITE=1 "$@"
}

build() {
    local t0; t0=$(date +%s.%N)
    ensure_build_packages
    [ -x "$PYTHON" ] || die "$PYTHON not found"
    rm -rf --one-file-system "$VENV"
    log "building $VENV (pubtools-sign==$PUBTOOLS_SIGN_VERSION; one-off, compiles python-qpid-proton, ~1-2 min)"
    : >"$BUILD_LOG"
    if ! {
        pyenv_clean "$PYTHON" -m venv "$VENV" &&
        pyenv_clean nice -n 10 "$VENV/bin/python" -m pip install \
            --disable-pip-version-check --no-input --progress-bar off \
            "pubtools-sign==$PUBTOOLS_SIGN_VERSION"
    } >>"$BUILD_LOG" 2>&1; then
        tail -n 40 "$BUILD_LOG" | sed 's/^/    | /' >&2
        die "venv build failed (full log: $BUILD_LOG)"
    fi
    # Verify: TLS support compiled into proton (pubtools-sign always creates an
    # SSLDomain), and the three entry points start.
    pyenv_clean "$VENV/bin/python" -c '
import sys, proton, pubtools.sign
if not proton.SSL.present():
    sys.exit("python-qpid-proton was built without OpenSSL (pkg-config/libssl-dev missing?)")
print("proton", proton.VERSION)' >>"$BUILD_LOG" 2>&1 ||
        { tail -n 5 "$BUILD_LOG" >&2; die "verification failed (log: $BUILD_LOG)"; }
    local t
    for t in "${TOOLS[@]}"; do
        pyenv_clean "$VENV/bin/$t" --help >>"$BUILD_LOG" 2>&1 ||
            { tail -n 20 "$BUILD_LOG" >&2; die "$VENV/bin/$t --help failed (log: $BUILD_LOG)"; }
    done
    {
        marker_key
        printf 'built=%s\n' "$(date -u +%FT%TZ)"
        pyenv_clean "$VENV/bin/python" -m pip freeze --disable-pip-version-check --all
    } >"$MARKER.tmp"
    mv "$MARKER.tmp" "$MARKER"
    log "venv ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s: $VENV"
}

main() {
    if ! venv_ok; then
        mkdir -p "$CACHE_DIR"
        exec 8>"$CACHE_DIR/.pubtools-venv.lock"
        flock 8
        if ! venv_ok; then   # (not in a || list: that would disable set -e in build)
            umask 022
            build
        fi
        exec 8>&-
    fi
    printf '%s\n' "$VENV"
}

main "$@"
