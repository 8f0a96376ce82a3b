#!/usr/bin/env bash
# Builds the Debian package (deploy/deb/build.sh --debug: the dev-profile binary, faster to build than release;
# the packaging is the same), installs it on this machine with apt-get, and checks what it installed:
#
#   - the signbus system user; /var/lib/signbus and /var/lib/signbus/gnupg owned by it, mode 700;
#     /etc/signbus/server.yaml root:signbus 0640; the unit installed but not enabled;
#   - `man -w signbus` and `signbus-serve`, the pages rendering; the bash completion completing `signbus ser`;
#   - `systemd-analyze verify` of the installed unit;
#   - the shipped example config refused by the unit's command line (no keys yet);
#   - the unit's ExecStart command line (read from the installed unit file, with its Environment=), run as the
#     signbus user against the testenv broker, with a throwaway key generated in /var/lib/signbus/gnupg and a
#     config derived from testenv's (its own queue, metrics on a free port): /readyz answers 200, one image
#     reference is signed through it with `target/debug/signbus msg-container-sign` and the signature verified
#     with skopeo, then SIGTERM makes it drain and exit 0;
#   - `apt-get purge` removes the package, its unit and config (keeping the user and the gpg home, as
#     documented); the test then removes those too when it created them.
#
#   testenv/package-test.sh     (root; brings the testenv up like test.sh, or uses SIGNBUS_TESTENV_ENV=<env file>
#                                of a testenv already up in another checkout; never stops the broker)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf 'package-test.sh: %s\n' "$*" >&2; }
die() { printf 'package-test.sh: FAILED: %s\n' "$*" >&2; exit 1; }
T0=$(date +%s)

[ "$(id -u)" = 0 ] || die "must run as root (installs a package)"
testenv/deps.sh build run package
if [ -n "${SIGNBUS_TESTENV_ENV:-}" ]; then
    # shellcheck disable=SC1090
    source "$SIGNBUS_TESTENV_ENV"
else
    testenv/up.sh
    # shellcheck disable=SC1091
    source testenv/.run/env
fi
dpkg -s signbus >/dev/null 2>&1 && die "a signbus package is already installed; this test installs and purges its own"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
log "building the package (debug profile)"
DEB=$(deploy/deb/build.sh --debug | tail -n1) || die "deploy/deb/build.sh failed (see above)"
[ -f "$DEB" ] || die "build.sh did not produce a .deb"
CLIENT=$TARGET/debug/signbus
GNUPG=/var/lib/signbus/gnupg
WORK=$(mktemp -d)
QUEUE=signbus-package-test-$$-$RANDOM
had_user=no; getent passwd signbus >/dev/null && had_user=yes
had_dir=no; [ -e /var/lib/signbus ] && had_dir=yes
SERVER_PID=""
as_signbus() { setpriv --reuid=signbus --regid=signbus --init-groups -- env -i PATH=/usr/bin:/bin HOME=/var/lib/signbus "$@"; }
mgmt() { curl -sS -f -u guest:guest -X "$1" -H 'content-type: application/json' "$SIGNBUS_MGMT_URL/api/queues/%2F/$2" ${3:+-d "$3"}; }

cleanup() {
    set +e
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null
    fi
    if getent passwd signbus >/dev/null && [ -d "$GNUPG" ]; then
        as_signbus gpgconf --homedir "$GNUPG" --kill all 2>/dev/null
    fi
    [ -d "$WORK/verify" ] && GNUPGHOME=$WORK/verify gpgconf --kill all 2>/dev/null
    dpkg -s signbus >/dev/null 2>&1 && apt-get purge -y -qq signbus >/dev/null 2>&1
    [ "$had_dir" = no ] && rm -rf /var/lib/signbus
    [ "$had_user" = no ] && getent passwd signbus >/dev/null && userdel signbus 2>/dev/null
    mgmt DELETE "$QUEUE" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Install.
log "installing $DEB"
apt-get install -y -qq --no-install-recommends "$DEB" >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log"; die "apt-get install"; }
dpkg -s signbus | grep -q '^Status: install ok installed' || die "signbus is not installed"

# 2. What the maintainer scripts made.
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd signbus) || die "no signbus user"
[ "$uid" -lt 1000 ] || die "signbus is not a system user (uid $uid)"
[ "$home" = /var/lib/signbus ] || die "signbus's home is $home"
[ "$shell" = /usr/sbin/nologin ] || die "signbus's shell is $shell"
for d in /var/lib/signbus "$GNUPG"; do
    [ "$(stat -c '%U:%G %a' "$d")" = "signbus:signbus 700" ] || die "$d is $(stat -c '%U:%G %a' "$d"), want signbus:signbus 700"
done
[ "$(stat -c '%U:%G %a' /etc/signbus/server.yaml)" = "root:signbus 640" ] ||
    die "/etc/signbus/server.yaml is $(stat -c '%U:%G %a' /etc/signbus/server.yaml)"
grep -qx /etc/signbus/server.yaml /var/lib/dpkg/info/signbus.conffiles || die "server.yaml is not a conffile"
UNIT=/lib/systemd/system/signbus.service
[ -f "$UNIT" ] || die "no $UNIT"
[ ! -e /etc/systemd/system/multi-user.target.wants/signbus.service ] || die "the unit was enabled"
# Reconfiguring runs the postinst again: it must not fail or change anything (idempotent).
dpkg-reconfigure signbus >/dev/null 2>&1 || die "postinst is not idempotent (dpkg-reconfigure failed)"
[ "$(stat -c '%U:%G %a' "$GNUPG")" = "signbus:signbus 700" ] || die "reconfigure changed $GNUPG"
log "user, directories, modes, conffile: OK"

# 3. Man pages and completions.
[ "$(man -w signbus)" = /usr/share/man/man1/signbus.1.gz ] || die "man -w signbus: $(man -w signbus 2>&1)"
man -w signbus-serve >/dev/null || die "no signbus-serve man page"
MANWIDTH=120 man -P cat signbus-serve 2>/dev/null | grep -q -- '--config' || die "signbus-serve(1) does not render --config"
[ -f /usr/share/bash-completion/completions/signbus ] || die "no bash completion"
offered=$(bash -c 'source /usr/share/bash-completion/completions/signbus
    COMP_WORDS=(signbus ser); COMP_CWORD=1; _signbus signbus ser signbus; printf "%s\n" "${COMPREPLY[@]}"')
[ "$offered" = serve ] || die "bash completion of 'signbus ser' offered '$offered'"
[ -f /usr/share/zsh/vendor-completions/_signbus ] && [ -f /usr/share/fish/vendor_completions.d/signbus.fish ] ||
    die "zsh or fish completion missing"
log "man pages and completions: OK"

# 4. The unit file.
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$UNIT" >"$WORK/verify.log" 2>&1 || { cat "$WORK/verify.log"; die "systemd-analyze verify $UNIT"; }
    log "systemd-analyze verify: OK"
else
    log "systemd-analyze not installed: unit not verified"
fi
EXEC=$(sed -n 's/^ExecStart=//p' "$UNIT")
read -ra CMD <<<"$EXEC"
[ "${CMD[0]}" = /usr/bin/tini ] && [[ " $EXEC " == *" /usr/bin/signbus serve --config /etc/signbus/server.yaml "* ]] ||
    die "unexpected ExecStart: $EXEC"
[ "$(sed -n 's/^User=//p' "$UNIT")" = signbus ] || die "the unit does not run as signbus"
ENVS=()
while read -r assignment; do ENVS+=("$assignment"); done < <(sed -n 's/^Environment=//p' "$UNIT")
# As systemd runs it: the command itself as the main process (exec, no shell or su in between to catch SIGTERM),
# with the unit's user, its groups and its Environment= only.
run_unit_command() {
    exec setpriv --reuid=signbus --regid=signbus --init-groups -- \
        env -i PATH=/usr/bin:/bin HOME=/var/lib/signbus "${ENVS[@]}" "${CMD[@]}"
}

# 5. As shipped, the config has no keys: the command line refuses to start, saying why.
if (run_unit_command) >"$WORK/shipped.log" 2>&1; then die "the shipped config started a server"; fi
grep -q 'signing.keys (or signing.cosign_keys) must list at least one key' "$WORK/shipped.log" || { cat "$WORK/shipped.log"; die "no reason given"; }
log "the shipped config is refused until it lists keys: OK"

# 6. A throwaway key in the signbus gpg home, a queue of our own, a config derived from testenv's.
as_signbus gpg --homedir "$GNUPG" --batch --quiet --passphrase '' \
    --quick-gen-key 'signbus package test <package-test@signbus.test>' ed25519 sign never 2>/dev/null
FPR=$(as_signbus gpg --homedir "$GNUPG" --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '$1=="fpr" && !found {print $10; found = 1}')
[ ${#FPR} -eq 40 ] || die "no key generated"
[ "$(stat -c '%U:%G %a' "$GNUPG")" = "signbus:signbus 700" ] || die "gpg changed $GNUPG"
mgmt PUT "$QUEUE" '{"durable":false,"auto_delete":false}' >/dev/null || die "declaring queue $QUEUE"
{
    awk '/^signing:/ {exit} {print}' "$SIGNBUS_SERVER_CONFIG" | sed "s|/queues/signbus.requests|/queues/$QUEUE|"
    printf 'signing:\n  gnupg_home: "%s"\n  workers: 1\n  keys:\n    - id: "%s"\n      name: "package-test"\n' "$GNUPG" "$FPR"
    printf 'metrics:\n  listen: "127.0.0.1:0"\n'
} >/etc/signbus/server.yaml
grep -q "listen_to: \"/queues/$QUEUE\"" /etc/signbus/server.yaml || die "could not derive the config from $SIGNBUS_SERVER_CONFIG"
sed "s|/queues/signbus.requests|/queues/$QUEUE|" "$SIGNBUS_CLIENT_CONFIG" >"$WORK/client.yaml"

# 7. The unit's command line, as signbus: ready, signs, drains on SIGTERM.
log "starting: ${CMD[*]}"
run_unit_command >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
addr=""
for _ in $(seq 200); do
    addr=$(sed -n 's/.*"addr":"\([0-9.:]*\)".*"message":"metrics listening".*/\1/p; s/.*"message":"metrics listening".*"addr":"\([0-9.:]*\)".*/\1/p' "$WORK/server.log" | awk 'NR == 1')
    [ -n "$addr" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$addr" ] || { cat "$WORK/server.log"; die "the server did not report its metrics address"; }
[ "${addr##*:}" != 9464 ] || die "metrics on the demo's port"
code=""
for _ in $(seq 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
done
[ "$code" = 200 ] || { cat "$WORK/server.log"; die "/readyz answered $code"; }
curl -sS "http://$addr/metrics" | grep -qx 'signbus_ready 1' || die "/metrics does not say signbus_ready 1"
log "server $SERVER_PID ready on http://$addr/readyz"

printf '{"schemaVersion": 2, "package-test": "%s"}' "$$-$(date +%s%N)" >"$WORK/manifest.json"
DIGEST=sha256:$(sha256sum "$WORK/manifest.json" | cut -d' ' -f1)
REF=registry.example.com/package-test/app:1
timeout 120 "$CLIENT" msg-container-sign --config-file "$WORK/client.yaml" --signing-key "$FPR" \
    --task-id "package-test-$$" --digest "$DIGEST" --reference "$REF" --raw --log-level WARNING \
    >"$WORK/signature.b64" || { cat "$WORK/signature.b64" "$WORK/server.log"; die "msg-container-sign"; }
base64 -d "$WORK/signature.b64" >"$WORK/signature-1"
mkdir -m 700 "$WORK/verify"
as_signbus gpg --homedir "$GNUPG" --batch --export "$FPR" >"$WORK/key.pub"
GNUPGHOME=$WORK/verify gpg --batch --quiet --import "$WORK/key.pub" 2>/dev/null
GNUPGHOME=$WORK/verify skopeo standalone-verify "$WORK/manifest.json" "$REF" "$FPR" "$WORK/signature-1" >/dev/null ||
    die "skopeo does not verify the signature"
curl -sS "http://$addr/metrics" | grep -q '^signbus_requests_total{.*outcome="signed".*} 1$' ||
    die "/metrics does not count the signature"
log "signed $REF@$DIGEST through the packaged server; skopeo verifies it"

kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=""
[ "$rc" = 0 ] || { cat "$WORK/server.log"; die "after SIGTERM the server exited $rc"; }
grep -q '"message":"stopped"' "$WORK/server.log" || { cat "$WORK/server.log"; die "no clean stop in the log"; }
log "SIGTERM: drained and exited 0"
# KillMode=mixed: what is left in the unit's cgroup (gpg-agent) is killed after the main process.
as_signbus gpgconf --homedir "$GNUPG" --kill all

# 8. Purge.
apt-get purge -y -qq signbus >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log"; die "apt-get purge"; }
for f in /usr/bin/signbus "$UNIT" /etc/signbus /usr/share/man/man1/signbus.1.gz /usr/share/bash-completion/completions/signbus; do
    [ ! -e "$f" ] || die "$f is left after purge"
done
dpkg-statoverride --list /etc/signbus/server.yaml >/dev/null && die "the stat override is left after purge"
getent passwd signbus >/dev/null && [ -d "$GNUPG" ] || die "purge removed the signbus user or its keys (it must keep them)"
log "purged (the signbus user and $GNUPG are kept, as documented; removed by this test)"
log "OK in $(( $(date +%s) - T0 )) s"
