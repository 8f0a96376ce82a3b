#!/usr/bin/env bash
# Bring up the signbus test environment (RabbitMQ 4.0 from a Debian trixie
# chroot, an AMQP 1.0 SASL relay, throwaway GnuPG keys and TLS files, config
# files for the signbus server and for pubtools-sign, and a cached venv with
# the real pubtools-sign client, see pubtools-venv.sh).
#
# Idempotent: a second run reuses the broker/relay that are already up.
# On success, testenv/.run/env exists (source it); see testenv/README.md.
set -euo pipefail

cd "$(dirname "$0")"
TESTENV_DIR=$(pwd -P)
RUN_DIR=$TESTENV_DIR/.run
CACHE_DIR=${SIGNBUS_TESTENV_CACHE:-/var/cache/signbus-testenv}
ROOTFS=$CACHE_DIR/trixie-rabbitmq         # cached, shared by all clones, never written at run time
CHROOT=$RUN_DIR/rootfs                     # per-clone mount point (read-only bind of $ROOTFS, private ns)
STATE=$RUN_DIR/rabbitmq                    # per-clone writable state: etc/, data/, log/
GNUPG_DIR=$RUN_DIR/gnupg
TLS_DIR=$RUN_DIR/tls
KEYS_DIR=$RUN_DIR/keys

AMQP_PORT=${SIGNBUS_AMQP_PORT:-5672}
AMQPS_PORT=${SIGNBUS_AMQPS_PORT:-5671}
MGMT_PORT=${SIGNBUS_MGMT_PORT:-15672}
RELAY_PORT=${SIGNBUS_RELAY_PORT:-5670}
METRICS_PORT=${SIGNBUS_METRICS_PORT:-9464}   # the demo server's /metrics, /healthz, /readyz
DIST_PORT=${SIGNBUS_DIST_PORT:-$((AMQP_PORT + 20000))}
NODENAME=${SIGNBUS_RABBITMQ_NODENAME:-rabbit@localhost}
READY_TIMEOUT=${SIGNBUS_READY_TIMEOUT:-60}
# Optional: pin an exact Debian version, e.g. SIGNBUS_RABBITMQ_VERSION=4.0.5-6+deb13u2
PIN_VERSION=${SIGNBUS_RABBITMQ_VERSION:-}

AMQP_URL=amqp://127.0.0.1:$AMQP_PORT
AMQPS_URL=amqps://localhost:$AMQPS_PORT
MGMT_URL=http://127.0.0.1:$MGMT_PORT
RELAY_URL=amqp://127.0.0.1:$RELAY_PORT
METRICS_URL=http://127.0.0.1:$METRICS_PORT

# shellcheck source=testenv/broker-lib.sh
. "$TESTENV_DIR/broker-lib.sh"

log() { printf 'up.sh: %s\n' "$*" >&2; }
die() { printf 'up.sh: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap, unshare, chroot)"

# --------------------------------------------------------------------------
# 1. host packages
# --------------------------------------------------------------------------
ensure_packages() {
    "$TESTENV_DIR/deps.sh" run
}

# --------------------------------------------------------------------------
# 2. cached trixie chroot with rabbitmq-server
# --------------------------------------------------------------------------
# The Debian archive apt on this machine already uses (first non-security,
# non-debug .../debian URI in sources.list / sources.list.d).
debian_mirror() {
    if [ -n "${SIGNBUS_DEBIAN_MIRROR:-}" ]; then echo "$SIGNBUS_DEBIAN_MIRROR"; return; fi
    local f uris=()
    shopt -s nullglob
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # one-line format: deb [opts] URI suite comps
        while read -r u; do uris+=("$u"); done < <(
            sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1=="deb"{print $2}')
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        while read -r u; do uris+=("$u"); done < <(
            awk 'BEGIN{IGNORECASE=1} /^[[:space:]]*#/{next} /^URIs:/{for(i=2;i<=NF;i++) print $i}' "$f")
    done
    shopt -u nullglob
    local u
    for u in "${uris[@]}"; do
        u=${u%/}
        case "$u" in
            http://*/debian|https://*/debian) echo "$u"; return ;;
        esac
    done
    return 1
}


build_rootfs() {
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.build.lock"
    flock 9
    local have; have=$(rootfs_version)
    if [ -n "$have" ] && { [ -z "$PIN_VERSION" ] || [ "$have" = "$PIN_VERSION" ]; }; then
        exec 9>&-
        return 0
    fi
    # Leftovers of interrupted builds are never reused.
    local d
    for d in "$CACHE_DIR"/.trixie-rabbitmq.build.*; do
        [ -e "$d" ] || continue
        if grep -qF " $d" /proc/self/mounts; then
            log "WARNING: $d still has mounts; leaving it alone"
        else
            rm -rf --one-file-system "$d"
        fi
    done
    local mirror
    mirror=$(debian_mirror) || die "could not find the Debian mirror in /etc/apt/sources.list*; set SIGNBUS_DEBIAN_MIRROR"
    local pkg=rabbitmq-server
    [ -n "$PIN_VERSION" ] && pkg="rabbitmq-server=$PIN_VERSION"
    local tmp; tmp=$(mktemp -d "$CACHE_DIR/.trixie-rabbitmq.build.XXXXXX")
    log "building trixie chroot with $pkg from $mirror (one-off, ~20-60 s)"
    if ! mmdebstrap --quiet --variant=apt --include="$pkg" trixie "$tmp/root" "$mirror" \
            >"$tmp.log" 2>&1; then
        cat "$tmp.log" >&2
        grep -qF " $tmp" /proc/self/mounts || rm -rf --one-file-system "$tmp" "$tmp.log"
        die "mmdebstrap failed (log above)"
    fi
    rm -f "$tmp.log"
    local v; v=$(chroot "$tmp/root" dpkg-query -W -f='${Version}' rabbitmq-server)
    local erl; erl=$(chroot "$tmp/root" dpkg-query -W -f='${Version}' erlang-base)
    mkdir -p "$tmp/root/etc/signbus-testenv"
    printf '%s\n' "$v" >"$tmp/root/etc/signbus-testenv/rabbitmq-server.version"
    printf '%s\n' "$erl" >"$tmp/root/etc/signbus-testenv/erlang-base.version"
    printf 'mirror=%s\nbuilt=%s\n' "$mirror" "$(date -u +%FT%TZ)" >"$tmp/root/etc/signbus-testenv/build.info"
    chmod 755 "$tmp/root"
    # Atomic switch: the final name only ever points at a complete tree.
    if [ -e "$ROOTFS" ]; then
        mv "$ROOTFS" "$tmp/old"
    fi
    mv "$tmp/root" "$ROOTFS"
    rm -rf --one-file-system "$tmp"
    exec 9>&-
}

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

# pid alive and its root (as seen via /proc) is our chroot mount point
broker_pid_ok() {
    local pid=$1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$CHROOT" ]
}

relay_pid_ok() {
    local pid=$1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'amqp-sasl-relay\.py'
}

yaml_str() { # YAML double-quoted scalar (paths, URLs, fingerprints)
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}


# --------------------------------------------------------------------------
# 3. TLS files (the amqps:// listener's and the clients'; pubtools-sign also reads its CN from client.pem)
# --------------------------------------------------------------------------
ensure_server_cert() { # broker certificate for the amqps:// listener, signed by the same throwaway CA
    [ -s "$TLS_DIR/server.crt" ] && [ -s "$TLS_DIR/server.key" ] && return 0
    log "generating broker certificate (localhost, 127.0.0.1)"
    (
        cd "$TLS_DIR"
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
            -keyout server.key -out server.csr 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 3650 -sha256 -extfile server.ext -out server.crt 2>/dev/null
        rm -f server.csr server.ext
    )
}

# Certificates the TLS tests present or trust to prove what is refused:
#   client-expired.pem  cert + key, CN signbus-test-expired, signed by the testenv CA, valid 2020-01-01..2020-01-02
#   other-ca.pem        a CA that signed nothing the broker uses (trusting it must refuse the broker)
#   other-client.pem    cert + key, CN signbus-test-other, signed by other-ca (the broker must refuse it)
# Made once, like the rest. OpenSSL 3.0's `x509 -req` cannot set a past start date, so `openssl ca` signs the
# expired one from a throwaway database.
ensure_refused_certs() {
    [ -s "$TLS_DIR/client-expired.pem" ] && [ -s "$TLS_DIR/other-ca.pem" ] && [ -s "$TLS_DIR/other-client.pem" ] && return 0
    log "generating refused TLS certificates (expired client; other CA and its client)"
    local work; work=$(mktemp -d "$TLS_DIR/.ca.XXXXXX")
    (   # set -e applies inside (the subshell is not tested); a failure stops up.sh
        cd "$TLS_DIR"
        : >"$work/index.txt"
        openssl rand -hex 8 >"$work/serial"
        printf '%s\n' '[ca]' 'default_ca = testenv' '[testenv]' \
            "database = $work/index.txt" "new_certs_dir = $work" "serial = $work/serial" \
            'default_md = sha256' 'policy = any' 'unique_subject = no' 'x509_extensions = client' \
            '[any]' 'commonName = supplied' \
            '[client]' 'basicConstraints = CA:FALSE' 'keyUsage = digitalSignature,keyEncipherment' \
            'extendedKeyUsage = clientAuth' >"$work/ca.cnf"
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=signbus-test-expired" \
            -keyout "$work/expired.key" -out "$work/expired.csr" 2>/dev/null
        openssl ca -batch -notext -config "$work/ca.cnf" -cert ca.pem -keyfile ca.key \
            -startdate 20200101000000Z -enddate 20200102000000Z \
            -in "$work/expired.csr" -out "$work/expired.crt" 2>"$work/ca.log" ||
            { cat "$work/ca.log" >&2; exit 1; }
        cat "$work/expired.crt" "$work/expired.key" >"$work/client-expired.pem"
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
            -subj "/CN=signbus-test-other-ca" -keyout "$work/other-ca.key" -out "$work/other-ca.pem" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=signbus-test-other" \
            -keyout "$work/other.key" -out "$work/other.csr" 2>/dev/null
        printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' \
            'extendedKeyUsage=clientAuth' >"$work/client.ext"
        openssl x509 -req -in "$work/other.csr" -CA "$work/other-ca.pem" -CAkey "$work/other-ca.key" \
            -set_serial "0x$(openssl rand -hex 8)" -days 3650 -sha256 -extfile "$work/client.ext" \
            -out "$work/other.crt" 2>/dev/null
        cat "$work/other.crt" "$work/other.key" >"$work/other-client.pem"
        chmod 600 "$work/client-expired.pem" "$work/other-client.pem" "$work/other-ca.key"
        mv "$work/client-expired.pem" "$work/other-client.pem" "$work/other-ca.pem" "$work/other-ca.key" .
    )
    rm -rf "$work"
}

ensure_tls() {
    if [ -s "$TLS_DIR/client.pem" ] && [ -s "$TLS_DIR/ca.pem" ]; then ensure_server_cert; ensure_refused_certs; return 0; fi
    log "generating throwaway CA and client certificate (CN=signbus-test)"
    rm -rf "$TLS_DIR"; mkdir -p "$TLS_DIR"; chmod 700 "$TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
            -subj "/CN=signbus-test-ca" -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -sha256 \
            -subj "/CN=signbus-test" -keyout client.key -out client.csr 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 3650 -sha256 -extfile client.ext -out client.crt 2>/dev/null
        cat client.crt client.key >client.pem.tmp
        chmod 600 client.pem.tmp ca.key client.key
        mv client.pem.tmp client.pem
        rm -f client.csr client.ext
    )
    ensure_server_cert
    ensure_refused_certs
}

# --------------------------------------------------------------------------
# 4. GnuPG keys
# --------------------------------------------------------------------------
key_fpr() { # $1 = email; prints the primary fingerprint of the secret key with that uid
    gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: -v email="<$1>" '
        $1=="sec" {fpr=""; want=1; next}
        $1=="fpr" && want {fpr=$10; want=0; next}
        $1=="uid" && index($10, email) && fpr!="" {print fpr; exit}'
}

ensure_gpg() {
    export GNUPGHOME=$GNUPG_DIR
    mkdir -p "$GNUPGHOME"; chmod 700 "$GNUPGHOME"
    grep -qx 'allow-loopback-pinentry' "$GNUPGHOME/gpg-agent.conf" 2>/dev/null ||
        echo 'allow-loopback-pinentry' >>"$GNUPGHOME/gpg-agent.conf"
    if [ -z "$(key_fpr ed25519@signbus.test)" ]; then
        log "generating ed25519 test key"
        gpg --batch --quiet --passphrase '' --quick-gen-key \
            'signbus test ed25519 <ed25519@signbus.test>' ed25519 sign never 2>/dev/null
    fi
    if [ -z "$(key_fpr rsa@signbus.test)" ]; then
        log "generating rsa4096 test key"
        gpg --batch --quiet --passphrase '' --quick-gen-key \
            'signbus test rsa <rsa@signbus.test>' rsa4096 sign never 2>/dev/null
    fi
    KEY_ED=$(key_fpr ed25519@signbus.test)
    KEY_RSA=$(key_fpr rsa@signbus.test)
    [ ${#KEY_ED} -ge 40 ] || die "could not determine ed25519 fingerprint"
    [ ${#KEY_RSA} -ge 40 ] || die "could not determine rsa fingerprint"
    mkdir -p "$KEYS_DIR"
    gpg --batch --export "$KEY_ED" >"$KEYS_DIR/ed25519.pub.gpg"
    gpg --batch --export "$KEY_RSA" >"$KEYS_DIR/rsa.pub.gpg"
    gpg --batch --armor --export "$KEY_ED" >"$KEYS_DIR/ed25519.pub.asc"
    gpg --batch --armor --export "$KEY_RSA" >"$KEYS_DIR/rsa.pub.asc"
    # Armored secret keys for the in-process signing backend (`secret_key_file`), mode 600, rewritten each run.
    export_secret_key "$KEY_ED" "$KEYS_DIR/ed25519.sec.asc" gpg --batch
    export_secret_key "$KEY_RSA" "$KEYS_DIR/rsa.sec.asc" gpg --batch
    ensure_passphrase_keys
}

export_secret_key() { # $1 = fingerprint, $2 = file, rest = the gpg command (home, passphrase) to export with
    local fpr=$1 file=$2; shift 2
    (umask 077; "$@" --armor --export-secret-keys "$fpr" >"$file.tmp") || die "could not export secret key $fpr"
    [ -s "$file.tmp" ] || die "gpg exported nothing for secret key $fpr"
    mv "$file.tmp" "$file"
}

# Keys protected by a passphrase (as production keys are), in a gpg home of their own so that tests which clear
# or check the agent's passphrase cache touch nothing else. The passphrase is random, made once, mode 600.
ensure_passphrase_keys() {
    PASS_HOME=$RUN_DIR/gnupg-passphrase
    PASS_FILE=$KEYS_DIR/passphrase
    mkdir -p "$PASS_HOME"; chmod 700 "$PASS_HOME"
    grep -qx 'allow-loopback-pinentry' "$PASS_HOME/gpg-agent.conf" 2>/dev/null ||
        echo 'allow-loopback-pinentry' >>"$PASS_HOME/gpg-agent.conf"
    if [ ! -s "$PASS_FILE" ]; then
        (umask 077; openssl rand -hex 24 >"$PASS_FILE")
    fi
    local pgpg=(gpg --homedir "$PASS_HOME" --batch --quiet --pinentry-mode loopback --passphrase-file "$PASS_FILE")
    if [ -z "$(GNUPGHOME=$PASS_HOME key_fpr pp-ed25519@signbus.test)" ]; then
        log "generating passphrase-protected ed25519 test key"
        "${pgpg[@]}" --quick-gen-key 'signbus passphrase ed25519 <pp-ed25519@signbus.test>' ed25519 sign never 2>/dev/null
    fi
    if [ -z "$(GNUPGHOME=$PASS_HOME key_fpr pp-rsa@signbus.test)" ]; then
        log "generating passphrase-protected rsa3072 test key"
        "${pgpg[@]}" --quick-gen-key 'signbus passphrase rsa <pp-rsa@signbus.test>' rsa3072 sign never 2>/dev/null
    fi
    PASS_KEY_ED=$(GNUPGHOME=$PASS_HOME key_fpr pp-ed25519@signbus.test)
    PASS_KEY_RSA=$(GNUPGHOME=$PASS_HOME key_fpr pp-rsa@signbus.test)
    [ ${#PASS_KEY_ED} -ge 40 ] && [ ${#PASS_KEY_RSA} -ge 40 ] || die "could not make the passphrase-protected keys"
    # Exported still protected by the same passphrase.
    export_secret_key "$PASS_KEY_ED" "$KEYS_DIR/pp-ed25519.sec.asc" "${pgpg[@]}"
    export_secret_key "$PASS_KEY_RSA" "$KEYS_DIR/pp-rsa.sec.asc" "${pgpg[@]}"
}

# --------------------------------------------------------------------------
# 5. config files
# --------------------------------------------------------------------------
write_client_yaml() { # $1 = file, $2 = broker url
    local tmp=$1.tmp section
    {
        for section in msg_signer msg_batch_signer; do
            echo "$section:"
            echo "  messaging_brokers: [$(yaml_str "$2")]"
            echo "  messaging_cert_key: $(yaml_str "$TLS_DIR/client.pem")"
            echo "  messaging_ca_cert: $(yaml_str "$TLS_DIR/ca.pem")"
            echo '  topic_send_to: "/queues/signbus.requests"'
            echo '  topic_listen_to: "/topic/signbus.reply.{creator}.{task_id}"'
            echo '  environment: "test"'
            echo '  service: "pubtools-sign"'
            echo '  timeout: 20'
            echo '  retries: 3'
            echo '  send_retries: 2'
            echo '  message_id_key: "request_id"'
            echo '  log_level: "INFO"'
            echo '  key_aliases:'
            echo "    test-ed25519: $(yaml_str "$KEY_ED")"
            [ "$section" = msg_batch_signer ] && echo '  chunk_size: 50'
        done
    } >"$tmp"
    mv "$tmp" "$1"
}

write_configs() {
    local tmp=$RUN_DIR/server.yaml.tmp
    cat >"$tmp" <<EOF
broker:
  urls: [$(yaml_str "$AMQP_URL")]
  sasl: anonymous
server:
  listen_to: "/queues/signbus.requests"
  reply_to: "/exchanges/amq.topic/signbus.reply.{creator}.{task_id}"
  max_in_flight: 64
signing:
  gnupg_home: $(yaml_str "$GNUPG_DIR")
  workers: 2
  keys:
    - id: $(yaml_str "$KEY_ED")
      name: "ed25519"
      aliases: ["test-ed25519"]
    - id: $(yaml_str "$KEY_RSA")
      name: "rsa"
      aliases: ["test-rsa"]
metrics:
  listen: "127.0.0.1:$METRICS_PORT"
EOF
    mv "$tmp" "$RUN_DIR/server.yaml"
    # The same server over AMQP 0-9-1 (lapin): same keys, same broker, same addresses.
    sed 's|^  sasl: anonymous$|  protocol: amqp091\n  sasl: anonymous|' "$RUN_DIR/server.yaml" >"$RUN_DIR/server-amqp091.yaml.tmp"
    mv "$RUN_DIR/server-amqp091.yaml.tmp" "$RUN_DIR/server-amqp091.yaml"
    write_client_yaml "$RUN_DIR/client.yaml" "$AMQP_URL"
    write_client_yaml "$RUN_DIR/client-relay.yaml" "$RELAY_URL"
    # pubtools-sign format; the amqp091:// scheme makes the signbus requester speak AMQP 0-9-1.
    write_client_yaml "$RUN_DIR/client-amqp091.yaml" "amqp091://127.0.0.1:$AMQP_PORT"
}

write_rabbitmq_etc() {
    local etc=$STATE/etc
    mkdir -p "$etc"
    cat >"$etc/rabbitmq.conf.tmp" <<EOF
# Written by testenv/up.sh on every broker start. Do not edit.
# Loopback only.
listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
# TLS (amqps://) with the throwaway CA: every client must present a valid certificate that CA signed.
listeners.ssl.1 = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = /etc/rabbitmq/tls/ca.pem
ssl_options.certfile = /etc/rabbitmq/tls/server.crt
ssl_options.keyfile = /etc/rabbitmq/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT

# Topology + user guest/guest (administrator). Loading definitions means the
# default user is not created, hence guest is defined there.
load_definitions = /etc/rabbitmq/definitions.json

# AMQP 1.0 in RabbitMQ 4 always requires SASL; ANONYMOUS maps to guest.
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = ANONYMOUS
anonymous_login_user = guest
anonymous_login_pass = guest
# SASL EXTERNAL over TLS: the user is the client certificate's CN (rabbitmq_auth_mechanism_ssl); the test
# certificate's CN (signbus-test) is a user in the definitions below.
auth_mechanisms.4 = EXTERNAL
ssl_cert_login_from = common_name

# Heartbeats (0-9-1) and idle time-out (AMQP 1.0) every 5 s (default 60): the broker notices a silent
# (partitioned) client within ~10-15 s and gives the requests it held to other consumers.
heartbeat = 5

# AMQP 1.0 address v1 (/topic/..., /queue/..., /exchange/...) is deprecated in
# 4.0 but permitted by default; permit it explicitly (pubtools-sign uses /topic/).
deprecated_features.permit.amqp_address_v1 = true

# Logs go to stdout -> testenv/.run/rabbitmq.log
log.console = true
log.console.level = info
log.console.use_colors = off
log.file = false

# Fresher numbers in the management API (default 5000 ms).
collect_statistics_interval = 1000
EOF
    mv "$etc/rabbitmq.conf.tmp" "$etc/rabbitmq.conf"
    mkdir -p "$etc/tls"
    cp "$TLS_DIR/ca.pem" "$TLS_DIR/server.crt" "$TLS_DIR/server.key" "$etc/tls/"
    chmod 755 "$etc/tls"; chmod 644 "$etc/tls/"*
    echo '[rabbitmq_management,rabbitmq_auth_mechanism_ssl].' >"$etc/enabled_plugins"
    # The compose definitions, plus the user the test client certificate names (SASL EXTERNAL; its password is
    # random and never used).
    "$PYTHON" - "$TESTENV_DIR/compose/definitions.json" "$etc/definitions.json" <<'PY'
import json, secrets, sys
d = json.load(open(sys.argv[1]))
d["users"].append({"name": "signbus-test", "password": secrets.token_hex(16), "tags": [], "limits": {}})
d["permissions"].append({"user": "signbus-test", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"})
json.dump(d, open(sys.argv[2], "w"), indent=1)
PY
    : >"$etc/rabbitmq-env.conf"
}

# --------------------------------------------------------------------------
# 6. broker
# --------------------------------------------------------------------------
# BROKER_INNER (testenv/broker-lib.sh) runs it in a private mount namespace.

# Trimmed plugins directory: only the enabled plugins and the applications
# they (and the rabbit core) depend on, resolved from the .app files. Halves
# the VM boot time (~5 s -> ~3 s). It is a directory of symlinks inside the
# per-clone data dir (seen as /var/lib/rabbitmq/plugins in the chroot), so the
# cached tree is untouched. SIGNBUS_RABBITMQ_FULL_PLUGINS=1 uses the full dir.
PLUGINS_DIR_IN_CHROOT=/var/lib/rabbitmq/plugins
make_plugins_dir() {
    local full; full=$(cd "$ROOTFS" && echo usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins)
    [ -d "$ROOTFS/$full" ] || die "no plugins directory in $ROOTFS"
    if [ "${SIGNBUS_RABBITMQ_FULL_PLUGINS:-0}" = 1 ]; then
        PLUGINS_DIR="/$full"
        return 0
    fi
    assemble_plugins "$ROOTFS/$full" "/$full" "$STATE/data/plugins" "$STATE/etc/enabled_plugins" ||
        die "could not assemble the plugins directory"
    PLUGINS_DIR=$PLUGINS_DIR_IN_CHROOT
}

start_broker() {
    local p
    for p in "$AMQP_PORT" "$AMQPS_PORT" "$MGMT_PORT" "$DIST_PORT"; do
        port_open "$p" && die "port 127.0.0.1:$p is already in use by something else (another broker? run testenv/down.sh, or set SIGNBUS_AMQP_PORT/SIGNBUS_MGMT_PORT)"
    done
    mkdir -p "$CHROOT" "$STATE"
    # Fresh broker state on every cold start (queues come back from definitions).
    if [ "${SIGNBUS_KEEP_BROKER_DATA:-0}" != 1 ]; then
        rm -rf --one-file-system "$STATE/data" "$STATE/log"
    fi
    mkdir -p "$STATE/data" "$STATE/log"
    write_rabbitmq_etc
    rm -rf "$STATE/data/plugins"
    make_plugins_dir
    printf '%s %s %s %s %s\n' "$AMQP_PORT" "$MGMT_PORT" "$DIST_PORT" "$NODENAME" "$ROOTFS" >"$RUN_DIR/rabbitmq.ports"
    printf '\n===== %s up.sh: starting rabbitmq-server %s (%s) =====\n' \
        "$(date -u +%FT%TZ)" "$(rootfs_version)" "$NODENAME" >>"$RUN_DIR/rabbitmq.log"
    setsid unshare --mount --propagation private /bin/bash -c "$BROKER_INNER" broker \
        "$ROOTFS" "$CHROOT" "$STATE" \
        HOME=/var/lib/rabbitmq \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        RABBITMQ_NODENAME="$NODENAME" \
        RABBITMQ_USE_LONGNAME=false \
        RABBITMQ_DIST_PORT="$DIST_PORT" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_PLUGINS_DIR="$PLUGINS_DIR" \
        >>"$RUN_DIR/rabbitmq.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/rabbitmq.pid"
    BROKER_STARTED_AT=$(date +%s.%N)
}

broker_ready() {
    port_open "$AMQP_PORT" || return 1
    port_open "$AMQPS_PORT" || return 1
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -u guest:guest \
        "$MGMT_URL/api/queues/%2F/signbus.requests" 2>/dev/null) || return 1
    [ "$code" = 200 ]
}

wait_broker() {
    local pid; pid=$(cat "$RUN_DIR/rabbitmq.pid")
    local deadline=$(( $(date +%s) + READY_TIMEOUT ))
    until broker_ready; do
        if ! [ -d "/proc/$pid" ]; then
            log "broker process $pid exited; log tail:"
            tail_log "$RUN_DIR/rabbitmq.log"
            bash "$TESTENV_DIR/down.sh" >&2 || true   # e.g. epmd is still around
            die "rabbitmq-server failed to start"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "broker not ready after ${READY_TIMEOUT}s; log tail:"
            tail_log "$RUN_DIR/rabbitmq.log"
            bash "$TESTENV_DIR/down.sh" >&2 || true
            die "rabbitmq-server did not become ready within ${READY_TIMEOUT}s"
        fi
        sleep 0.25
    done
}

# --------------------------------------------------------------------------
# 7. relay
# --------------------------------------------------------------------------
start_relay() {
    port_open "$RELAY_PORT" && die "port 127.0.0.1:$RELAY_PORT is already in use (set SIGNBUS_RELAY_PORT)"
    printf '%s %s\n' "$RELAY_PORT" "$AMQP_PORT" >"$RUN_DIR/relay.ports"
    setsid "$PYTHON" -u "$TESTENV_DIR/amqp-sasl-relay.py" \
        --listen "127.0.0.1:$RELAY_PORT" --broker "127.0.0.1:$AMQP_PORT" \
        >>"$RUN_DIR/relay.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/relay.pid"
    local pid=$!
    for _ in $(seq 1 40); do
        port_open "$RELAY_PORT" && return 0
        [ -d "/proc/$pid" ] || break
        sleep 0.25
    done
    tail_log "$RUN_DIR/relay.log" 20
    die "relay did not start listening on 127.0.0.1:$RELAY_PORT"
}

# ==========================================================================
main() {
    local t0; t0=$(date +%s.%N)
    ensure_packages
    PYTHON=/usr/bin/python3
    [ -x "$PYTHON" ] || PYTHON=$(command -v python3)

    mkdir -p "$RUN_DIR"
    rm -f "$RUN_DIR/env"          # present only after a fully successful run

    build_rootfs
    local version; version=$(rootfs_version)
    case "$version" in
        4.0.*) ;;
        *) log "WARNING: chroot has rabbitmq-server $version, expected 4.0.x" ;;
    esac
    printf '%s\n' "$version" >"$RUN_DIR/rabbitmq.version"
    log "rabbitmq-server $version (erlang $(cat "$ROOTFS/etc/signbus-testenv/erlang-base.version"), cache $ROOTFS)"

    # cached venv with the real pubtools-sign client (built once, ~45 s)
    local venv; venv=$(bash "$TESTENV_DIR/pubtools-venv.sh") || die "could not set up the pubtools-sign venv"
    [ "$(readlink "$RUN_DIR/venv" 2>/dev/null)" = "$venv" ] || ln -sfn "$venv" "$RUN_DIR/venv"

    ensure_tls
    ensure_gpg
    write_configs

    # broker: reuse if up
    local pid=""
    [ -f "$RUN_DIR/rabbitmq.pid" ] && pid=$(cat "$RUN_DIR/rabbitmq.pid")
    if broker_pid_ok "$pid"; then
        local want="$AMQP_PORT $MGMT_PORT $DIST_PORT $NODENAME $ROOTFS" have
        have=$(cat "$RUN_DIR/rabbitmq.ports" 2>/dev/null || true)
        [ "$have" = "$want" ] || die "running broker (pid $pid) uses '$have', requested '$want': run testenv/down.sh first"
        log "broker already running (pid $pid), reusing"
    else
        [ -n "$pid" ] && log "stale broker pid file ($pid), starting a new broker"
        # something of ours still running without a valid pid file? stop it first
        local p
        for p in /proc/[0-9]*; do
            if [ "$(readlink "$p/root" 2>/dev/null)" = "$CHROOT" ]; then
                log "found orphaned broker processes; running down.sh first"
                bash "$TESTENV_DIR/down.sh" >&2
                break
            fi
        done
        log "starting rabbitmq-server on $AMQP_URL (management $MGMT_URL)"
        start_broker
    fi
    wait_broker
    if [ -n "${BROKER_STARTED_AT:-}" ]; then
        log "broker ready after $(awk -v a="$BROKER_STARTED_AT" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
    fi

    # relay: reuse if up
    pid=""
    [ -f "$RUN_DIR/relay.pid" ] && pid=$(cat "$RUN_DIR/relay.pid")
    if relay_pid_ok "$pid" && port_open "$RELAY_PORT"; then
        local have; have=$(cat "$RUN_DIR/relay.ports" 2>/dev/null || true)
        [ "$have" = "$RELAY_PORT $AMQP_PORT" ] || die "running relay (pid $pid) uses '$have': run testenv/down.sh first"
        log "relay already running (pid $pid), reusing"
    else
        if relay_pid_ok "$pid"; then kill "$pid" 2>/dev/null || true; sleep 0.5; fi
        log "starting AMQP 1.0 SASL relay on $RELAY_URL"
        start_relay
    fi
    # end-to-end: plain (non-SASL) AMQP 1.0 open/close through the relay
    "$PYTHON" "$TESTENV_DIR/amqp10-check.py" "127.0.0.1:$RELAY_PORT" >/dev/null ||
        die "AMQP 1.0 open/close through the relay failed (see $RUN_DIR/relay.log)"

    # env file, written last
    {
        printf 'export SIGNBUS_SERVER_CONFIG=%q\n' "$RUN_DIR/server.yaml"
        printf 'export SIGNBUS_CLIENT_CONFIG=%q\n' "$RUN_DIR/client.yaml"
        printf 'export SIGNBUS_SERVER_CONFIG_AMQP091=%q\n' "$RUN_DIR/server-amqp091.yaml"
        printf 'export SIGNBUS_CLIENT_CONFIG_AMQP091=%q\n' "$RUN_DIR/client-amqp091.yaml"
        printf 'export SIGNBUS_CLIENT_CONFIG_RELAY=%q\n' "$RUN_DIR/client-relay.yaml"
        printf 'export SIGNBUS_PUBTOOLS_BIN=%q\n' "$venv/bin"
        printf 'export GNUPGHOME=%q\n' "$GNUPG_DIR"
        printf 'export SIGNBUS_TEST_KEY=%q\n' "$KEY_ED"
        printf 'export SIGNBUS_TEST_KEY_RSA=%q\n' "$KEY_RSA"
        printf 'export SIGNBUS_TEST_PASSPHRASE_HOME=%q\n' "$PASS_HOME"
        printf 'export SIGNBUS_TEST_PASSPHRASE_FILE=%q\n' "$PASS_FILE"
        printf 'export SIGNBUS_TEST_PASSPHRASE_KEY=%q\n' "$PASS_KEY_ED"
        printf 'export SIGNBUS_TEST_PASSPHRASE_KEY_RSA=%q\n' "$PASS_KEY_RSA"
        printf 'export SIGNBUS_TEST_SECRET_KEY_FILE=%q\n' "$KEYS_DIR/ed25519.sec.asc"
        printf 'export SIGNBUS_TEST_SECRET_KEY_FILE_RSA=%q\n' "$KEYS_DIR/rsa.sec.asc"
        printf 'export SIGNBUS_TEST_PASSPHRASE_SECRET_KEY_FILE=%q\n' "$KEYS_DIR/pp-ed25519.sec.asc"
        printf 'export SIGNBUS_TEST_PASSPHRASE_SECRET_KEY_FILE_RSA=%q\n' "$KEYS_DIR/pp-rsa.sec.asc"
        printf 'export SIGNBUS_AMQP_URL=%q\n' "$AMQP_URL"
        printf 'export SIGNBUS_AMQPS_URL=%q\n' "$AMQPS_URL"
        printf 'export SIGNBUS_TLS_CA=%q\n' "$TLS_DIR/ca.pem"
        printf 'export SIGNBUS_TLS_CLIENT=%q\n' "$TLS_DIR/client.pem"
        printf 'export SIGNBUS_TLS_CLIENT_EXPIRED=%q\n' "$TLS_DIR/client-expired.pem"
        printf 'export SIGNBUS_TLS_OTHER_CA=%q\n' "$TLS_DIR/other-ca.pem"
        printf 'export SIGNBUS_TLS_OTHER_CLIENT=%q\n' "$TLS_DIR/other-client.pem"
        printf 'export SIGNBUS_MGMT_URL=%q\n' "$MGMT_URL"
        printf 'export SIGNBUS_RELAY_URL=%q\n' "$RELAY_URL"
        printf 'export SIGNBUS_METRICS_URL=%q\n' "$METRICS_URL"
        printf 'export SIGNBUS_TESTENV_DIR=%q\n' "$RUN_DIR"
    } >"$RUN_DIR/env.tmp"
    mv "$RUN_DIR/env.tmp" "$RUN_DIR/env"

    log "ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s: rabbitmq-server $version, $AMQP_URL, $MGMT_URL, relay $RELAY_URL"
    log "source $RUN_DIR/env"
}

main "$@"
