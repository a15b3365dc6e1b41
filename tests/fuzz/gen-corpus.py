#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (corpus-wire/, corpus-uri/).

The frames are laid out here from docs/protocol.md with struct.pack, not
with the library's encoders, so that the seeds also cross-check them.
Run from anywhere; it rewrites both directories.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = 0x4F494D56
REPLY = 0x80
T = dict(HELLO=0x01, AUTH=0x02, OPEN=0x03, READ=0x10, WRITE=0x11, FLUSH=0x12,
         TRIM=0x13, WRITE_ZEROES=0x14, SIZE=0x15, TRUNCATE=0x16,
         BLOCK_STATUS=0x17, DISCONNECT=0x18)


def hdr(typ, body, ident=1, status=0, flags=0, length=None):
    if length is None:
        length = len(body)
    return struct.pack('<IHHQIi', MAGIC, typ, flags, ident, length, status) + body


def hello(minv=1, maxv=1, features=0x3, nonce=bytes(range(32))):
    return struct.pack('<HHI', minv, maxv, features) + nonce


def hello_reply(version=1, features=0x3, reserved=0):
    return (struct.pack('<HHI', version, reserved, features) + bytes(range(32, 64))
            + bytes(range(64, 96)))


def open_body(flags, size, export, path, reserved=0):
    return (struct.pack('<IIQHH', flags, reserved, size, len(export), len(path))
            + export + path)


def open_reply(size, caps, max_io):
    return struct.pack('<QII', size, caps, max_io)


def io(offset, length, flags=0, addr=0, rkey=0, reserved=0):
    return struct.pack('<QIIQII', offset, length, flags, addr, rkey, reserved)


def rng(offset, length, flags=0, reserved=0):
    return struct.pack('<QQII', offset, length, flags, reserved)


def wire_seeds():
    s = {}
    s['hello'] = hdr(T['HELLO'], hello())
    s['hello-range'] = hdr(T['HELLO'], hello(1, 7, 0xffffffff))
    s['hello-bad-range'] = hdr(T['HELLO'], hello(3, 2))
    s['hello-short'] = hdr(T['HELLO'], hello()[:39])
    s['hello-reply'] = hdr(T['HELLO'] | REPLY, hello_reply())
    s['hello-reply-reserved'] = hdr(T['HELLO'] | REPLY, hello_reply(reserved=1))
    s['hello-reply-error'] = hdr(T['HELLO'] | REPLY, b'no common protocol version', status=71)
    s['auth'] = hdr(T['AUTH'], bytes(range(100, 132)), ident=2)
    s['auth-reply-denied'] = hdr(T['AUTH'] | REPLY, b'authentication failed', ident=2,
                                 status=13)
    s['open-rdwr'] = hdr(T['OPEN'], open_body(0x1, 0, b'images', b'vm/disk.img'), ident=3)
    s['open-create'] = hdr(T['OPEN'], open_body(0x3, 1 << 30, b'e', b'new.raw'), ident=3)
    s['open-all-flags'] = hdr(T['OPEN'], open_body(0x1f, 4096, b'e', b'p'), ident=3)
    s['open-nul'] = hdr(T['OPEN'], open_body(0x1, 0, b'e\x00', b'p'), ident=3)
    s['open-empty-path'] = hdr(T['OPEN'], open_body(0x1, 0, b'e', b''), ident=3)
    s['open-dotdot'] = hdr(T['OPEN'], open_body(0x1, 0, b'e', b'../../etc/passwd'), ident=3)
    s['open-big-size'] = hdr(T['OPEN'], open_body(0x3, 1 << 63, b'e', b'p'), ident=3)
    s['open-reserved'] = hdr(T['OPEN'], open_body(0x1, 0, b'e', b'p', reserved=9), ident=3)
    s['open-reply'] = hdr(T['OPEN'] | REPLY, open_reply(1 << 30, 0x7f, 32 << 20), ident=3)
    s['open-reply-small-io'] = hdr(T['OPEN'] | REPLY, open_reply(0, 0x3, 4096), ident=3)
    s['open-reply-bad-io'] = hdr(T['OPEN'] | REPLY, open_reply(0, 0x3, 100), ident=3)
    s['read'] = hdr(T['READ'], io(4096, 4096), ident=10)
    s['read-end'] = hdr(T['READ'], io((1 << 63) - 2, 1), ident=10)
    s['read-overflow'] = hdr(T['READ'], io((1 << 64) - 1, 16), ident=10)
    s['read-zero'] = hdr(T['READ'], io(0, 0), ident=10)
    s['read-rkey'] = hdr(T['READ'], io(0, 512, addr=0x7f0000001000, rkey=0x1234), ident=10)
    s['read-flags'] = hdr(T['READ'], io(0, 512, flags=0x80), ident=10)
    s['read-status'] = hdr(T['READ'], io(0, 512), ident=10, status=5)
    s['read-payload'] = hdr(T['READ'], io(0, 4) + b'abcd', ident=10)
    s['write'] = hdr(T['WRITE'], io(512, 64, flags=1) + bytes(range(64)), ident=11)
    s['write-mismatch'] = hdr(T['WRITE'], io(0, 200) + b'x' * 100, ident=11)
    s['write-big'] = hdr(T['WRITE'], io(0, 5000) + b'\xaa' * 5000, ident=11)
    s['trim'] = hdr(T['TRIM'], rng(1 << 20, 1 << 20), ident=12)
    s['write-zeroes'] = hdr(T['WRITE_ZEROES'], rng(0, 65536, flags=3), ident=13)
    s['write-zeroes-reserved'] = hdr(T['WRITE_ZEROES'], rng(0, 1, reserved=1), ident=13)
    s['block-status'] = hdr(T['BLOCK_STATUS'], rng(0, 1 << 40), ident=14)
    s['block-status-zero'] = hdr(T['BLOCK_STATUS'], rng(0, 0), ident=14)
    s['truncate'] = hdr(T['TRUNCATE'], struct.pack('<Q', 1 << 33), ident=15)
    s['truncate-huge'] = hdr(T['TRUNCATE'], struct.pack('<Q', (1 << 64) - 1), ident=15)
    s['flush'] = hdr(T['FLUSH'], b'', ident=16)
    s['size'] = hdr(T['SIZE'], b'', ident=17)
    s['disconnect'] = hdr(T['DISCONNECT'], b'', ident=18)
    s['flush-body'] = hdr(T['FLUSH'], b'\x00', ident=16)
    s['unknown-type'] = hdr(0x19, b'', ident=19)
    s['read-reply'] = hdr(T['READ'] | REPLY, b'data' * 16, ident=10)
    s['error-reply'] = hdr(T['WRITE'] | REPLY, b'export is read-only', ident=11, status=30)
    s['bad-magic'] = b'VMIX' + hdr(T['FLUSH'], b'')[4:]
    s['hdr-flags'] = hdr(T['FLUSH'], b'', flags=0x8000)
    s['hdr-huge-length'] = hdr(T['WRITE'], io(0, 16) + b'0' * 16, length=0xffffffff)
    s['hdr-only'] = hdr(T['SIZE'], b'')[:24]
    return s


URI_SEEDS = [
    '/var/lib/images/disk.img',
    'disk.img',
    './relative/x.raw',
    '/tmp/with%20percent',
    'file:///var/lib/x.img',
    'file://localhost/srv/y.raw',
    'FILE:///upper',
    'file:///a%20b%2Fc',
    'vmio://host:10810/export/path',
    'vmio://host/export/path?secret-file=/etc/vmio/secret',
    'vmio://node-1.example.org:4000/images/vm%201/disk.raw?timeout=5&transport=tcp',
    'vmio://[::1]:10810/e/p',
    'vmio://[fe80::1%25eth0]/e/p',
    'vmio://[2001:db8::7]/e/p?reconnect-timeout=30',
    'vmio://h/p?a=1&&b=2&a=3',
    'vmio://h/p?k=',
    'vmio://h/p?=v',
    'vmio://h/p?novalue',
    'vmio://user@host/e/p',
    'vmio://h:0/e',
    'vmio://h:65536/e',
    'vmio://h:abc/e',
    'vmio://h/p#frag',
    'vmio://h/a%zz',
    'vmio://h/a%00b',
    'vmio://h/a%',
    'vmio://[::1/e',
    'vmio://[]:1/e',
    'vmio://:80/e',
    'gfarm://meta:601/home/user/img',
    '1abc://not-a-scheme',
    '://nothing',
    'vmio://h\t/e',
]


def main():
    wdir = os.path.join(HERE, 'corpus-wire')
    udir = os.path.join(HERE, 'corpus-uri')
    for d in (wdir, udir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    for name, data in sorted(wire_seeds().items()):
        with open(os.path.join(wdir, name), 'wb') as f:
            f.write(data)
    for i, uri in enumerate(URI_SEEDS):
        with open(os.path.join(udir, 'uri-%02d' % i), 'wb') as f:
            f.write(uri.encode())
    print('%d wire seeds, %d URI seeds' % (len(wire_seeds()), len(URI_SEEDS)))


if __name__ == '__main__':
    main()
