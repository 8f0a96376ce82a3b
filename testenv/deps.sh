#!/usr/bin/env bash
# The one list of Debian packages signbus needs on this machine, installed if missing.
#
#   testenv/deps.sh [build|run|test|package|compose]...   (default: build run test)
#
#   build: what `cargo build` needs (gpgme-sys links libgpgme through pkg-config)
#   run:   what the demo and a server need at run time (gpg and its agent, skopeo to verify, curl, the tools
#          testenv/up.sh uses to build and enter the broker's chroot)
#   compose: what testenv/compose-test.sh adds (podman with runc, its init, the dnsname CNI plugin so containers
#          find each other by service name, and docker-compose 1.29 driving
#          podman's Docker API; mmdebstrap makes the base images; iptables for published ports)
#   test:  what the test suite adds (Debian's docker-registry for the interop tests, python for the SASL relay
#          and the pubtools-sign venv, openssl for the TLS files)
#   package: what testenv/package-test.sh and testenv/alerts-test.sh add (binutils to strip the packaged binary,
#          man-db for `man -w`, systemd for `systemd-analyze verify`, tini which the .deb depends on, Debian's
#          prometheus for promtool; its own server is kept from running, as docker-registry's is)
#
# Every script that builds or runs signbus (demo.sh, test.sh, up.sh) calls this first, so each of them works as
# the very first command on a fresh Debian 12 machine (root, Rust toolchain). It is idempotent and quiet when
# nothing is missing: one `dpkg -s` per package, no network.
set -euo pipefail

BUILD=(pkg-config libgpgme-dev gcc libc6-dev)
RUN=(gnupg gpg-agent skopeo curl mmdebstrap util-linux openssl python3)
TEST=(docker-registry iptables python3-venv python3-dev libssl-dev)
PACKAGE=(binutils man-db systemd tini prometheus python3)
COMPOSE=(podman runc catatonit conmon containernetworking-plugins golang-github-containernetworking-plugin-dnsname iptables
    docker-compose mmdebstrap)

want=()
[ $# -eq 0 ] && set -- build run test
for group in "$@"; do
    case "$group" in
        build) want+=("${BUILD[@]}") ;;
        run) want+=("${RUN[@]}") ;;
        test) want+=("${TEST[@]}") ;;
        package) want+=("${PACKAGE[@]}") ;;
        compose) want+=("${COMPOSE[@]}") ;;
        *) echo "deps.sh: unknown group '$group' (build, run, test, package, compose)" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${want[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

[ "$(id -u)" = 0 ] || { echo "deps.sh: missing ${missing[*]}; run as root to install them" >&2; exit 1; }
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# docker-registry ships a service listening on :5000; the tests start their own registry on a free loopback
# port, so keep the packaged one from running where systemd would start it.
if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi
# Only promtool is wanted from prometheus: keep its server (:9090) from running where systemd would start it.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
