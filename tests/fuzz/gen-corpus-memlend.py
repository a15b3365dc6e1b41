#!/usr/bin/env python3
"""Writes the seed corpus of fuzz-memlend-proto (corpus-memlend-proto/):
one frame per file, a 20-byte header then a body, laid out here from
docs/memlend-protocol.md with struct.pack (not with the library's
encoders, so that the seeds also cross-check them). Valid messages of
every type plus a few malformed ones. Run from anywhere; it rewrites the
directory.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'corpus-memlend-proto')
MAGIC = 0x4C4D4D56
REPLY = 0x80
T = dict(HELLO=0x01, AUTH=0x02, REGISTER=0x10, HEARTBEAT=0x11, WITHDRAW=0x12,
         PROVIDED=0x13, RECLAIM=0x14, UNEXPORTED=0x15, REQUEST=0x20,
         ATTACHED=0x21, RELEASE=0x22, STATUS=0x30, NOTICE=0x40, FATAL=0x7f)


def frame(typ, body, ident=1, status=0, flags=0, length=None):
    if length is None:
        length = len(body)
    return struct.pack('<IHHIiI', MAGIC, typ, flags, ident, status, length) + body


def s(text):
    b = text.encode()
    return struct.pack('<H', len(b)) + b


def lease(ident=7, state=3, iqn='iqn.2026-12.org.vmio:lenderA.lease7', lun=1):
    return (struct.pack('<QQIIq', ident, 64 << 20, state, lun, 1800000000)
            + s('lenderA') + s('vm1') + s('192.0.2.7:3260') + s(iqn))


def lender(name='lenderA', avail=1):
    return s(name) + s('192.0.2.7:3260') + struct.pack('<QQIq', 1 << 30, 64 << 20, avail,
                                                         1800000000)


def seeds():
    nonce = bytes(range(32))
    yield 'hello', frame(T['HELLO'], struct.pack('<HHI', 1, 1, 2) + nonce + s('vm1'))
    yield 'hello-reply', frame(T['HELLO'] | REPLY,
                               struct.pack('<HH', 1, 0) + nonce + bytes(range(32, 64)))
    yield 'auth', frame(T['AUTH'], bytes(range(64, 96)), ident=2)
    yield 'auth-denied', frame(T['AUTH'] | REPLY, s('authentication failed'), ident=2,
                               status=13)
    yield 'register', frame(T['REGISTER'], s('192.0.2.7:3260') + struct.pack('<Q', 1 << 30))
    yield 'lease-seconds', frame(T['REGISTER'] | REPLY, struct.pack('<I', 30))
    yield 'heartbeat', frame(T['HEARTBEAT'], struct.pack('<Q', 1 << 30))
    yield 'withdraw', frame(T['WITHDRAW'], b'')
    yield 'provided', frame(T['PROVIDED'], struct.pack('<QII', 7, 0, 1)
                            + s('iqn.2026-12.org.vmio:lenderA.lease7'))
    yield 'provided-error', frame(T['PROVIDED'], struct.pack('<QII', 7, 28, 0) + s(''))
    yield 'reclaim', frame(T['RECLAIM'], struct.pack('<Q', 7))
    yield 'request', frame(T['REQUEST'], struct.pack('<QI', 64 << 20, 30000))
    yield 'request-reply', frame(T['REQUEST'] | REPLY, lease(state=2))
    yield 'status', frame(T['STATUS'], b'')
    yield 'status-reply', frame(T['STATUS'] | REPLY, struct.pack('<II', 2, 2) + lender()
                                + lender('lenderB', 0) + lease() + lease(8, 1, ''))
    yield 'notice-revoke', frame(T['NOTICE'], struct.pack('<I', 2) + lease(state=4), ident=0)
    yield 'notice-provision', frame(T['NOTICE'], struct.pack('<I', 1) + lease(9, 1, '', 0),
                                    ident=0)
    yield 'fatal', frame(T['FATAL'], s('not authenticated'), ident=0, status=13)
    yield 'error-reply', frame(T['RELEASE'] | REPLY, s('lease 7 belongs to borrower vm2'),
                               status=1)
    # malformed
    yield 'bad-magic', b'GET / HTTP/1.1\r\nHost: x\r\n\r\n'
    yield 'bad-state', frame(T['NOTICE'], struct.pack('<I', 2) + lease(state=9), ident=0)
    yield 'bad-name', frame(T['HELLO'], struct.pack('<HHI', 1, 1, 1) + nonce + s('a b'))
    yield 'trailing', frame(T['RECLAIM'], struct.pack('<QB', 7, 0))
    yield 'huge-count', frame(T['STATUS'] | REPLY, struct.pack('<II', 0xffffffff, 1))
    yield 'flags', frame(T['STATUS'], b'', flags=1)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for name, data in seeds():
        with open(os.path.join(OUT, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
