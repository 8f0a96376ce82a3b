#!/usr/bin/env python3
"""Raw-socket AMQP 1.0 smoke check WITHOUT SASL (stdlib only).

Connects to HOST:PORT (default: the relay, 127.0.0.1:$SIGNBUS_RELAY_PORT or
5670), sends the plain AMQP 1.0 header, expects the same header back, sends an
open frame, expects the broker's open frame, sends close, expects close.
Exit status 0 on success; prints the broker's open properties.

Pointed directly at RabbitMQ 4 this fails (the broker insists on SASL), which
is why amqp-sasl-relay.py exists.
"""

import importlib.util
import os
import socket
import struct
import sys

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"

_spec = importlib.util.spec_from_file_location(
    "amqp_sasl_relay", os.path.join(os.path.dirname(os.path.abspath(__file__)), "amqp-sasl-relay.py"))
_relay = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_relay)


def _str(s):
    b = s.encode()
    return bytes([0xA1, len(b)]) + b


def amqp_frame(body, channel=0):
    return struct.pack(">IBBH", 8 + len(body), 2, 0x00, channel) + body


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def recv_frame(sock):
    while True:
        hdr = recv_exact(sock, 8)
        size, doff, _ftype, _ch = struct.unpack(">IBBH", hdr)
        rest = recv_exact(sock, size - 8)
        body = rest[doff * 4 - 8:]
        if body:  # skip empty (heartbeat) frames
            return _relay._decode(body, 0)[0]


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else f"127.0.0.1:{os.environ.get('SIGNBUS_RELAY_PORT', '5670')}"
    host, port = target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(AMQP_HEADER)
        hdr = recv_exact(s, 8)
        if hdr != AMQP_HEADER:
            print(f"FAIL: server answered header {hdr!r}", file=sys.stderr)
            return 1
        open_body = b"\x00\x53\x10" + _relay._list([_str("signbus-amqp10-check"), _str("vhost:/")])
        s.sendall(amqp_frame(open_body))
        perf = recv_frame(s)
        if not isinstance(perf, _relay.Described) or perf.descriptor != 0x10:
            print(f"FAIL: expected open, got {perf!r}", file=sys.stderr)
            return 1
        fields = perf.value
        props = fields[9] if len(fields) > 9 else None
        s.sendall(amqp_frame(b"\x00\x53\x18\x45"))
        perf = recv_frame(s)
        if not isinstance(perf, _relay.Described) or perf.descriptor != 0x18:
            print(f"FAIL: expected close, got {perf!r}", file=sys.stderr)
            return 1
        err = perf.value[0] if perf.value else None
        if err is not None:
            print(f"FAIL: close carried an error: {err!r}", file=sys.stderr)
            return 1
    print(f"OK: AMQP 1.0 open/close via {target}; broker container-id={fields[0]!r} properties={props!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
