# Shared by up.sh (the single test broker) and cluster-up.sh (the 3-node cluster), sourced: how a RabbitMQ
# node is started from the cached trixie chroot, and small helpers both need.
# shellcheck shell=bash

port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }
# The rabbitmq-server version the cached chroot $ROOTFS holds (empty when it is not built yet).
rootfs_version() { cat "$ROOTFS/etc/signbus-testenv/rabbitmq-server.version" 2>/dev/null || true; }
tail_log() { [ -f "$1" ] && tail -n "${2:-60}" "$1" | sed 's/^/    | /' >&2 || true; }

# A node runs as a PID 1-less tree inside a private mount namespace:
#   $ROOTFS  --bind,ro-->  <mount point>, plus proc, a tmpfs /tmp and binds of the
#   node's state dirs (etc, data, log). Nothing is mounted in the host namespace, and the
#   cached tree is never written to. Arguments: rootfs, mount point, state dir, then `env` assignments.
BROKER_INNER='
set -eu
rootfs=$1; chroot_dir=$2; state=$3; shift 3
mount --bind "$rootfs" "$chroot_dir"
mount -o remount,bind,ro "$chroot_dir"
mount -t proc -o nosuid,nodev,noexec proc "$chroot_dir/proc"
mount -t tmpfs -o mode=1777,size=256m tmpfs "$chroot_dir/tmp"
mount --bind "$state/etc"  "$chroot_dir/etc/rabbitmq"
mount --bind "$state/data" "$chroot_dir/var/lib/rabbitmq"
mount --bind "$state/log"  "$chroot_dir/var/log/rabbitmq"
exec chroot "$chroot_dir" /usr/bin/env -i "$@" /usr/lib/rabbitmq/bin/rabbitmq-server
'

# Trimmed plugins directory: only the enabled plugins and the applications they (and the rabbit core) depend on,
# resolved from the .app files. Halves the VM boot time (~5 s -> ~3 s). A directory of symlinks in the node's
# data dir (seen as /var/lib/rabbitmq/plugins in the chroot), so the cached tree is untouched.
#   assemble_plugins SRC (plugins dir on the host) SRC_IN_CHROOT DST ENABLED_PLUGINS_FILE
assemble_plugins() {
    "${PYTHON:-/usr/bin/python3}" - "$@" <<'PY'
import os, re, sys
src, src_in_chroot, dst, enabled_file = sys.argv[1:5]
apps = {}
for d in os.listdir(src):
    m = re.match(r"^(.+)-([0-9][^-]*)$", d)
    if m and os.path.isdir(os.path.join(src, d, "ebin")):
        apps[m.group(1)] = d
    elif d.endswith(".ez"):
        sys.exit("packed .ez plugins are not handled")
def deps(app):
    text = open(os.path.join(src, apps[app], "ebin", app + ".app")).read()
    out = []
    for key in ("applications", "optional_applications", "included_applications"):
        m = re.search(r"\{" + key + r",\s*\[([^\]]*)\]", text)
        if m:
            out += [x.strip() for x in m.group(1).split(",") if x.strip()]
    return out
enabled = re.findall(r"[a-z0-9_]+", open(enabled_file).read())
todo = ["rabbit", "rabbit_common", "rabbitmq_prelaunch"] + enabled
for name in enabled:
    if name not in apps:
        sys.exit(f"enabled plugin {name} not found in {src}")
need = set()
while todo:
    a = todo.pop()
    if a in need or a not in apps:  # OTP apps (kernel, ssl, ...) live elsewhere
        continue
    need.add(a)
    todo += deps(a)
os.makedirs(dst, exist_ok=True)
for a in sorted(need):
    os.symlink(os.path.join(src_in_chroot, apps[a]), os.path.join(dst, apps[a]))
PY
}
