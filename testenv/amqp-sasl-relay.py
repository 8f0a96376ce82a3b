#!/usr/bin/env python3
"""AMQP 1.0 SASL relay (test fixture, stdlib only).

pubtools-sign (python-qpid-proton) connects with the plain AMQP 1.0 protocol
header ``AMQP\\x00\\x01\\x00\\x00`` and no SASL layer. RabbitMQ 4 refuses AMQP 1.0
connections without SASL. For each client connection this relay:

1. reads the client's 8-byte protocol header;
2. if it is the plain AMQP 1.0 header, opens a broker connection, sends the SASL
   header ``AMQP\\x03\\x01\\x00\\x00``, reads the broker's SASL header and
   sasl-mechanisms frame, sends sasl-init with mechanism ANONYMOUS, reads the
   sasl-outcome and checks code 0 (ok), then forwards the client's header;
   any other header (a client that does SASL itself, AMQP 0-9-1, ...) is
   forwarded unchanged;
3. pipes bytes both ways until either side closes.

Listens on 127.0.0.1 only. One log line per connection on stderr.

Usage: amqp-sasl-relay.py [--listen 127.0.0.1:5670] [--broker 127.0.0.1:5672]
Defaults come from SIGNBUS_RELAY_PORT and SIGNBUS_AMQP_PORT.
"""

import argparse
import asyncio
import itertools
import os
import signal
import struct
import sys
import time

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"

FRAME_TYPE_SASL = 0x01
SASL_MECHANISMS = 0x40
SASL_INIT = 0x41
SASL_CHALLENGE = 0x42
SASL_OUTCOME = 0x44
SASL_CODES = {0: "ok", 1: "auth", 2: "sys", 3: "sys-perm", 4: "sys-temp"}

HANDSHAKE_TIMEOUT = 10.0
_conn_ids = itertools.count(1)


def log(msg):
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    print(f"{ts} amqp-sasl-relay: {msg}", file=sys.stderr, flush=True)


class SaslError(Exception):
    pass


# ---------------------------------------------------------------------------
# minimal AMQP 1.0 type system (enough for SASL frames)
# ---------------------------------------------------------------------------
class Described:
    def __init__(self, descriptor, value):
        self.descriptor = descriptor
        self.value = value

    def __repr__(self):
        return f"Described({self.descriptor!r}, {self.value!r})"


def _decode(buf, i):
    """Decode one AMQP value at buf[i]; return (value, next_index)."""
    return _decode_body(buf[i], buf, i + 1)


def _decode_body(c, buf, i):
    """Decode the value of constructor c whose data starts at buf[i]."""
    if c == 0x00:  # described
        desc, i = _decode(buf, i)
        val, i = _decode(buf, i)
        return Described(desc, val), i
    if c == 0x40:
        return None, i
    if c == 0x41:
        return True, i
    if c == 0x42:
        return False, i
    if c == 0x56:
        return buf[i] != 0, i + 1
    if c in (0x50, 0x51):  # ubyte, byte
        return buf[i], i + 1
    if c in (0x60, 0x61):
        return struct.unpack_from(">H", buf, i)[0], i + 2
    if c in (0x70, 0x71):
        return struct.unpack_from(">I", buf, i)[0], i + 4
    if c in (0x80, 0x81, 0x83):  # ulong, long, timestamp
        return struct.unpack_from(">Q", buf, i)[0], i + 8
    if c in (0x43, 0x44):  # uint0 / ulong0
        return 0, i
    if c in (0x52, 0x53, 0x54, 0x55):  # smalluint, smallulong, smallint, smalllong
        return buf[i], i + 1
    if c in (0xA0, 0xA1, 0xA3):  # vbin8, str8, sym8
        n = buf[i]
        raw = bytes(buf[i + 1:i + 1 + n])
        return (raw if c == 0xA0 else raw.decode("utf-8", "replace")), i + 1 + n
    if c in (0xB0, 0xB1, 0xB3):  # vbin32, str32, sym32
        n = struct.unpack_from(">I", buf, i)[0]
        raw = bytes(buf[i + 4:i + 4 + n])
        return (raw if c == 0xB0 else raw.decode("utf-8", "replace")), i + 4 + n
    if c == 0x45:  # list0
        return [], i
    if c in (0xC0, 0xD0):  # list8 / list32
        if c == 0xC0:
            size, count = buf[i], buf[i + 1]
            start = i + 1
            i += 2
        else:
            size, count = struct.unpack_from(">II", buf, i)
            start = i + 4
            i += 8
        out = []
        for _ in range(count):
            v, i = _decode(buf, i)
            out.append(v)
        return out, start + size
    if c in (0xC1, 0xD1):  # map8 / map32
        if c == 0xC1:
            size, count = buf[i], buf[i + 1]
            start = i + 1
            i += 2
        else:
            size, count = struct.unpack_from(">II", buf, i)
            start = i + 4
            i += 8
        out = {}
        for _ in range(count // 2):
            k, i = _decode(buf, i)
            v, i = _decode(buf, i)
            out[k if not isinstance(k, (list, dict)) else repr(k)] = v
        return out, start + size
    if c in (0x72, 0x73):  # float, char
        return struct.unpack_from(">f" if c == 0x72 else ">I", buf, i)[0], i + 4
    if c == 0x82:  # double
        return struct.unpack_from(">d", buf, i)[0], i + 8
    if c == 0x98:  # uuid
        return bytes(buf[i:i + 16]), i + 16
    if c in (0xE0, 0xF0):  # array8 / array32
        if c == 0xE0:
            size, count = buf[i], buf[i + 1]
            start = i + 1
            i += 2
        else:
            size, count = struct.unpack_from(">II", buf, i)
            start = i + 4
            i += 8
        ctor = buf[i]
        i += 1
        if ctor == 0x00:
            raise SaslError("arrays of described values are not supported")
        out = []
        for _ in range(count):
            v, i = _decode_body(ctor, buf, i)
            out.append(v)
        return out, start + size
    raise SaslError(f"unsupported AMQP type constructor 0x{c:02x}")


def _sym(s):
    b = s.encode("ascii")
    return bytes([0xA3, len(b)]) + b


def _vbin(b):
    if len(b) < 256:
        return bytes([0xA0, len(b)]) + b
    return b"\xb0" + struct.pack(">I", len(b)) + b


def _list(items):
    body = b"".join(items)
    if len(body) + 1 < 256 and len(items) < 256:
        return bytes([0xC0, len(body) + 1, len(items)]) + body
    return b"\xd0" + struct.pack(">II", len(body) + 4, len(items)) + body


def sasl_frame(descriptor, fields):
    body = b"\x00" + bytes([0x53, descriptor]) + _list(fields)
    # size(4) doff(1)=2 -> 8-byte header, type(1)=SASL, type-specific(2)=0
    return struct.pack(">IBBH", 8 + len(body), 2, FRAME_TYPE_SASL, 0) + body


def sasl_init_anonymous(trace=b"signbus-relay"):
    return sasl_frame(SASL_INIT, [_sym("ANONYMOUS"), _vbin(trace)])


async def read_frame(reader):
    hdr = await reader.readexactly(8)
    size, doff, ftype, _chan = struct.unpack(">IBBH", hdr)
    if size < 8 or doff < 2:
        raise SaslError(f"malformed frame header {hdr!r}")
    rest = await reader.readexactly(size - 8)
    body = rest[doff * 4 - 8:]
    if not body:
        return ftype, None
    value, _ = _decode(body, 0)
    return ftype, value


def _descriptor_code(value):
    if not isinstance(value, Described):
        raise SaslError(f"expected a described performative, got {value!r}")
    d = value.descriptor
    if isinstance(d, str):  # symbolic descriptor, e.g. amqp:sasl-outcome:list
        return {"amqp:sasl-mechanisms:list": SASL_MECHANISMS,
                "amqp:sasl-outcome:list": SASL_OUTCOME,
                "amqp:sasl-challenge:list": SASL_CHALLENGE}.get(d, -1)
    return d


async def sasl_anonymous(reader, writer):
    """Run SASL ANONYMOUS against the broker; return the offered mechanisms."""
    writer.write(SASL_HEADER)
    await writer.drain()
    hdr = await reader.readexactly(8)
    if hdr != SASL_HEADER:
        raise SaslError(f"broker answered protocol header {hdr!r}, wanted SASL")
    ftype, perf = await read_frame(reader)
    if ftype != FRAME_TYPE_SASL or _descriptor_code(perf) != SASL_MECHANISMS:
        raise SaslError(f"expected sasl-mechanisms, got type={ftype} {perf!r}")
    mechs = perf.value[0] if perf.value else []
    if isinstance(mechs, str):
        mechs = [mechs]
    if "ANONYMOUS" not in mechs:
        raise SaslError(f"broker does not offer ANONYMOUS (offers {mechs})")
    writer.write(sasl_init_anonymous())
    await writer.drain()
    while True:
        ftype, perf = await read_frame(reader)
        code = _descriptor_code(perf)
        if code == SASL_CHALLENGE:  # not expected for ANONYMOUS; answer empty
            writer.write(sasl_frame(0x43, [_vbin(b"")]))
            await writer.drain()
            continue
        if code != SASL_OUTCOME:
            raise SaslError(f"expected sasl-outcome, got {perf!r}")
        outcome = perf.value[0] if perf.value else None
        if outcome != 0:
            raise SaslError(f"sasl-outcome code {outcome} ({SASL_CODES.get(outcome, '?')})")
        return mechs


async def pipe(reader, writer, counter, key):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            counter[key] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def close(writer):
    if writer is None:
        return
    try:
        writer.close()
        await writer.wait_closed()
    except (OSError, ConnectionError):
        pass


class Relay:
    def __init__(self, broker_host, broker_port):
        self.broker_host = broker_host
        self.broker_port = broker_port

    async def handle(self, creader, cwriter):
        cid = next(_conn_ids)
        peer = cwriter.get_extra_info("peername")
        peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        started = time.monotonic()
        bwriter = None
        mode = "?"
        counter = {"up": 0, "down": 0}
        try:
            header = await asyncio.wait_for(creader.readexactly(8), HANDSHAKE_TIMEOUT)
            breader, bwriter = await asyncio.wait_for(
                asyncio.open_connection(self.broker_host, self.broker_port), HANDSHAKE_TIMEOUT)
            if header == AMQP_HEADER:
                mechs = await asyncio.wait_for(sasl_anonymous(breader, bwriter), HANDSHAKE_TIMEOUT)
                mode = f"sasl ANONYMOUS ok (broker offered {','.join(mechs)})"
            else:
                mode = f"passthrough (client header {header!r})"
            bwriter.write(header)
            await bwriter.drain()
            log(f"#{cid} {peer} -> {self.broker_host}:{self.broker_port}: {mode}")
            await asyncio.gather(
                pipe(creader, bwriter, counter, "up"),
                pipe(breader, cwriter, counter, "down"),
            )
        except asyncio.IncompleteReadError as e:
            # a bare connect/close (port probe) sends nothing: not worth a line
            if e.partial or bwriter is not None:
                log(f"#{cid} {peer}: connection closed during handshake")
        except asyncio.TimeoutError:
            log(f"#{cid} {peer}: handshake timed out")
        except (SaslError, OSError) as e:
            log(f"#{cid} {peer}: FAILED: {e}")
        finally:
            await close(bwriter)
            await close(cwriter)
            if os.environ.get("SIGNBUS_RELAY_DEBUG"):
                log(f"#{cid} closed after {time.monotonic() - started:.2f}s, "
                    f"{counter['up']} bytes up, {counter['down']} bytes down")


def _hostport(s, default_host="127.0.0.1"):
    if ":" in s:
        h, p = s.rsplit(":", 1)
        return h or default_host, int(p)
    return default_host, int(s)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default=f"127.0.0.1:{os.environ.get('SIGNBUS_RELAY_PORT', '5670')}")
    ap.add_argument("--broker", default=f"127.0.0.1:{os.environ.get('SIGNBUS_AMQP_PORT', '5672')}")
    args = ap.parse_args()
    lhost, lport = _hostport(args.listen)
    bhost, bport = _hostport(args.broker)
    if lhost not in ("127.0.0.1", "localhost", "::1"):
        ap.error("the relay only listens on loopback")
    relay = Relay(bhost, bport)
    server = await asyncio.start_server(relay.handle, lhost, lport, reuse_address=True)
    log(f"listening on {lhost}:{lport}, broker {bhost}:{bport}, pid {os.getpid()}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    log("stopping")


if __name__ == "__main__":
    asyncio.run(main())
