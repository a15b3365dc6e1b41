#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (corpus-wire/, corpus-uri/,
corpus-gfarm-helper/, corpus-gfarm-routes/, corpus-rdma-conn/,
corpus-migrate-delta/).

The frames are laid out here from docs/protocol.md (and the gfarm helper
messages from libvmio/storage/gfarm-helper-proto.h) with struct.pack, not
with the library's encoders, so that the seeds also cross-check them.
Run from anywhere; it rewrites every directory.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = 0x4F494D56
REPLY = 0x80
T = dict(HELLO=0x01, AUTH=0x02, OPEN=0x03, READ=0x10, WRITE=0x11, FLUSH=0x12,
         TRIM=0x13, WRITE_ZEROES=0x14, SIZE=0x15, TRUNCATE=0x16,
         BLOCK_STATUS=0x17, DISCONNECT=0x18, LOCAL=0x19)


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


def local_reply(flags=0, pid=4242, fd=7, reserved=0):
    return (bytes(range(16)) + struct.pack('<QIIQQI', 0xeffffffc, pid, fd, 2049, 131077, flags)
            + struct.pack('<I', reserved) + bytes(8))


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
    s['write-rdma'] = hdr(T['WRITE'], io(0, 512, addr=0x7f0000001000, rkey=0x1234), ident=11)
    s['write-rdma-payload'] = hdr(T['WRITE'], io(0, 4, rkey=0x1234) + b'abcd', ident=11)
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
    s['local'] = hdr(T['LOCAL'], b'', ident=19)
    s['local-body'] = hdr(T['LOCAL'], b'\x00', ident=19)
    s['local-reply'] = hdr(T['LOCAL'] | REPLY, local_reply(), ident=19)
    s['local-reply-rdwr'] = hdr(T['LOCAL'] | REPLY, local_reply(flags=1), ident=19)
    s['local-reply-flags'] = hdr(T['LOCAL'] | REPLY, local_reply(flags=6), ident=19)
    s['local-reply-pid0'] = hdr(T['LOCAL'] | REPLY, local_reply(pid=0), ident=19)
    s['local-reply-reserved'] = hdr(T['LOCAL'] | REPLY, local_reply(reserved=1), ident=19)
    s['local-reply-short'] = hdr(T['LOCAL'] | REPLY, local_reply()[:63], ident=19)
    s['local-refused'] = hdr(T['LOCAL'] | REPLY, b"export 'e' has no local data path",
                             ident=19, status=95)
    s['unknown-type'] = hdr(0x1f, b'', ident=19)
    s['read-reply'] = hdr(T['READ'] | REPLY, b'data' * 16, ident=10)
    s['error-reply'] = hdr(T['WRITE'] | REPLY, b'export is read-only', ident=11, status=30)
    s['bad-magic'] = b'VMIX' + hdr(T['FLUSH'], b'')[4:]
    s['hdr-flags'] = hdr(T['FLUSH'], b'', flags=0x8000)
    s['hdr-huge-length'] = hdr(T['WRITE'], io(0, 16) + b'0' * 16, length=0xffffffff)
    s['hdr-only'] = hdr(T['SIZE'], b'')[:24]
    return s


GFH_MAGIC = 0x48464D56
GFH = dict(OPEN=1, READ=2, WRITE=3, SYNC=4, TRUNCATE=5, SIZE=6, CLOSE=7)
GFH_MAX_PATH = 4096
GFH_MAX_MSG = 512


def gfh_req(op, window=0, arg0=0, arg1=0, text=b'', textlen=None, magic=GFH_MAGIC):
    if textlen is None:
        textlen = len(text)
    return struct.pack('<IIIIQQ', magic, op, window, textlen, arg0, arg1) + text


def gfh_rep(op, err=0, value=0, msg=b'', msglen=None, magic=GFH_MAGIC):
    if msglen is None:
        msglen = len(msg)
    return struct.pack('<IIiIQ', magic, op, err, msglen, value) + msg


def gfarm_helper_seeds():
    s = {}
    o = GFH['OPEN']
    # Requests.
    s['req-open'] = gfh_req(o, 1 << 20, 0x3, 1 << 30, b'/images/vm/disk.img\x00/images')
    s['req-open-no-beneath'] = gfh_req(o, 4096, 0x1, 0, b'/images/vm/disk.img\x00')
    s['req-open-max'] = gfh_req(o, 1, 0, 0, b'p' * GFH_MAX_PATH + b'\x00'
                                + b'b' * GFH_MAX_PATH)
    s['req-open-long-path'] = gfh_req(o, 1, 0, 0, b'p' * (GFH_MAX_PATH + 1) + b'\x00')
    s['req-open-long-beneath'] = gfh_req(o, 1, 0, 0, b'/p\x00' + b'b' * (GFH_MAX_PATH + 1))
    s['req-open-no-nul'] = gfh_req(o, 4096, 0, 0, b'/images/vm/disk.img')
    s['req-open-empty-path'] = gfh_req(o, 4096, 0, 0, b'\x00/images')
    s['req-open-nul-beneath'] = gfh_req(o, 4096, 0, 0, b'/p\x00/b\x00c')
    s['req-open-zero-window'] = gfh_req(o, 0, 0, 0, b'/p\x00/b')
    s['req-open-short-text'] = gfh_req(o, 4096, 0, 0, b'p')
    s['req-read'] = gfh_req(GFH['READ'], 0, 4096, 65536)
    s['req-read-end'] = gfh_req(GFH['READ'], 0, (1 << 64) - 2, 1)
    s['req-read-overflow'] = gfh_req(GFH['READ'], 0, (1 << 64) - 1, 16)
    s['req-write'] = gfh_req(GFH['WRITE'], 0, 1 << 40, 1 << 20)
    s['req-write-overflow'] = gfh_req(GFH['WRITE'], 0, 1 << 63, 1 << 63)
    s['req-sync'] = gfh_req(GFH['SYNC'])
    s['req-sync-text'] = gfh_req(GFH['SYNC'], text=b'x')
    s['req-truncate'] = gfh_req(GFH['TRUNCATE'], 0, 1 << 33)
    s['req-size'] = gfh_req(GFH['SIZE'])
    s['req-close'] = gfh_req(GFH['CLOSE'])
    s['req-unknown-op'] = gfh_req(8)
    s['req-textlen-mismatch'] = gfh_req(o, 4096, 0, 0, b'/p\x00', textlen=4)
    s['req-bad-magic'] = gfh_req(GFH['SIZE'], magic=0x4F494D56)
    s['req-short'] = gfh_req(GFH['SIZE'])[:31]
    # Replies.
    s['rep-ok'] = gfh_rep(o)
    s['rep-size'] = gfh_rep(GFH['SIZE'], 0, 1 << 34)
    s['rep-error'] = gfh_rep(GFH['READ'], 5, 0, b'gfarm: read of /images/a at 0: '
                             b'Input/output error')
    s['rep-error-max'] = gfh_rep(GFH['WRITE'], 4095, 0, b'm' * GFH_MAX_MSG)
    s['rep-msg-too-long'] = gfh_rep(GFH['WRITE'], 28, 0, b'm' * (GFH_MAX_MSG + 1))
    s['rep-msg-control'] = gfh_rep(o, 13, 0, b'denied\x00\x1b[2J\n\xff')
    s['rep-msglen-mismatch'] = gfh_rep(o, 2, 0, b'abc', msglen=4)
    s['rep-bad-op'] = gfh_rep(0)
    s['rep-negative-err'] = gfh_rep(GFH['SYNC'], -5)
    s['rep-huge-err'] = gfh_rep(GFH['SYNC'], 4096)
    s['rep-short'] = gfh_rep(o)[:23]
    return s


GFARM_ROUTES_SEEDS = {
    'example': (b'# gfsd host     vmiod export URI                    Gfarm directory\n'
                b'io1.example     vmio://io1.example:10810/images     /images\n'
                b'IO2.example     vmio://io2.example:10810/images     /images\n'),
    'blank-comments': b'\n   \t\n  # indented\n#\nio3 vmio://io3/e /data\n\n',
    'crlf-tabs': b'io1.example\tvmio://[::1]:4000/e\t/images/\r\nio3\tvmio://h/x//\t//\r\n',
    'root': b'io3 vmio://io3:1/all /\n',
    'no-final-newline': b'io1.example vmio://io1/images /images',
    'many-routes': b''.join(b'h%d vmio://h%d/e /d%d\n' % (i, i, i) for i in range(64))
                   + b'io1.example vmio://io1/images /images\n',
    'two-fields': b'io1.example vmio://io1/images\n',
    'four-fields': b'io1.example vmio://io1/images /images extra\n',
    'not-vmio': b'io1.example http://io1/images /images\n',
    'query': b'io1.example vmio://io1/images?timeout=5 /images\n',
    'no-export': b'io1.example vmio://io1/ /images\n',
    'no-host': b'io1.example vmio:///images /images\n',
    'relative-dir': b'io1.example vmio://io1/images images\n',
    'dotdot': b'io1.example vmio://io1/images /images/../etc\n',
    'nul': b'io1.example vmio://io1/images /ima\x00ges\n',
    'control': b'io1.exa\x01mple vmio://io1/images /images\n',
    'high-bytes': b'io1.example vmio://io1/\xc3\xa9 /\xff\n',
    'sibling': b'io1.example vmio://io1/images /images2\nio3 vmio://io3/e /image\n',
}


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


def rdma_conn_seeds():
    ok = struct.pack('>IIII', 0x444d5256, 1, 64, 65536)
    return {
        'valid': ok,
        'valid-padded': struct.pack('>IIII', 0x444d5256, 1, 2, 256) + bytes(40),
        'bad-magic': struct.pack('>IIII', 0x12345678, 1, 64, 65536),
        'bad-version': struct.pack('>IIII', 0x444d5256, 2, 64, 65536),
        'depth-zero': struct.pack('>IIII', 0x444d5256, 1, 0, 65536),
        'msg-huge': struct.pack('>IIII', 0x444d5256, 1, 64, 0xffffffff),
        'short': ok[:12],
        'empty': b'',
    }


def uleb(v):
    out = b''
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def migrate_delta_seeds():
    """Inputs of fuzz-migrate-delta: encodings (uleb128 skip, uleb128 n, n
    bytes; see libvmio/migrate/codec.h) that are also read as (mode,
    reference, page) pairs."""
    def pair(skip, lit):
        return uleb(skip) + uleb(len(lit)) + lit
    s = {}
    s['empty'] = b''
    s['first-byte'] = pair(0, b'\x07')
    s['merged'] = pair(0, b'\x07\x00\x09') + pair(3, b'\x01')
    s['last-byte'] = pair(4095, b'\x42')
    s['whole-page'] = pair(0, bytes(range(256)) * 16)
    s['many-pairs'] = b''.join(pair(3 if i else 0, bytes([i % 255 + 1])) for i in range(1000))
    s['skip-to-end'] = pair(4096, b'\x01')
    s['literal-past-end'] = pair(4095, b'\x01\x02')
    s['literal-past-input'] = uleb(0) + uleb(8) + b'abc'
    s['zero-literal'] = uleb(5) + uleb(0) + pair(3, b'x')
    s['second-skip-zero'] = pair(0, b'a') + pair(0, b'b')
    s['overlong-uleb'] = b'\x80\x00\x01\x09'
    s['uleb-33-bits'] = b'\xff\xff\xff\xff\x1f\x01\x09'
    s['truncated-uleb'] = pair(0, b'a') + b'\x80'
    s['after-page-end'] = pair(4095, b'\x42') + b'\x00'
    # As (mode, reference, page): sparse edits at both ends, dense pages.
    edits = b''.join(struct.pack('>HB', off, v) for off, v in
                     ((0, 1), (1, 2), (4, 3), (4095, 4), (4093, 5), (2048, 6)))
    s['edits-ends'] = b'\x00' + bytes(range(1, len(edits) + 1)) + edits
    s['edits-alternate'] = (b'\x00' + b'\x00' * 600
                            + b''.join(struct.pack('>HB', 2 * k, 0xff) for k in range(200)))
    s['dense-text'] = b'\x01' + b'the quick brown fox ' * 20 + b'the quick brown cat ' * 20
    s['dense-counter'] = b'\x01' + bytes(64) + bytes([0, 0, 0, 1]) * 16
    return s


def mig_rec(typ, body, region=0, comp=0, raw_len=None):
    """A migration stream record (libvmio/migrate/stream.h); the sequence
    number and checksum are left 0: fuzz-migrate-stream repairs them when
    the input's first byte is odd."""
    if raw_len is None:
        raw_len = len(body)
    return struct.pack('<BBHIQIIQ', typ, comp, 0, region, 0, len(body), raw_len, 0) + body


def migrate_stream_seeds():
    """Inputs of fuzz-migrate-stream: byte 0 (1 = repair checksums) and a
    stream for a receiver with regions "low" (16 x 4 KiB) and "high"
    (4 x 16 KiB)."""
    import hashlib
    def region(length, ps, name):
        return struct.pack('<QII', length, ps, 0) + name.ljust(64, b'\0')
    hello = mig_rec(1, struct.pack('<IIII', 1, 0, 2, 0) + region(16 * 4096, 4096, b'low')
                    + region(4 * 16384, 16384, b'high'))
    def rnd(final=1, n=0):
        return mig_rec(2, struct.pack('<II', n, final))
    raw = bytes((i * 7) & 0xff for i in range(4096))
    rle = uleb(100) + uleb(3) + b'abc' + uleb(3000) + uleb(1) + b'z'
    delta = uleb(0) + uleb(2) + b'XY'
    p0 = (uleb(0) + bytes([1]) + uleb(1)                   # ZERO pages 0-1
          + uleb(0) + bytes([0]) + raw                     # RAW page 2
          + uleb(0) + bytes([2]) + uleb(len(rle)) + rle    # RLE page 3
          + uleb(0) + bytes([3]) + uleb(len(delta)) + delta  # DELTA page 4
          + uleb(0) + bytes([4]) + uleb(0) + uleb(2) + hashlib.sha256(raw).digest()  # DEDUP 5
          + uleb(0) + bytes([7]) + uleb(2))                # SKIP pages 6-8
    raw16 = bytes((i * 13) & 0xff for i in range(16384))
    p1 = (uleb(1) + bytes([0]) + raw16                     # RAW page 1
          + uleb(0) + bytes([4]) + uleb(1) + uleb(1) + hashlib.sha256(raw16).digest())
    end = mig_rec(4, bytes(16) + struct.pack('<QI', 12, 0x80000001))
    seeds = {
        'stream-ok': b'\x01' + hello + rnd() + mig_rec(3, p0) + mig_rec(3, p1, region=1) + end,
        'stream-raw-checksums': b'\x00' + hello + rnd() + mig_rec(3, p0) + end,
        'stream-truncated': b'\x01' + hello + rnd() + mig_rec(3, p0)[:3000],
        'stream-no-round': b'\x01' + hello + mig_rec(3, p0) + end,
        'stream-bad-dedup': b'\x01' + hello + rnd() + mig_rec(3, uleb(4) + bytes([4]) + uleb(0)
                                                           + uleb(9) + bytes(32)) + end,
        'stream-region-past-end': b'\x01' + hello + rnd() + mig_rec(3, uleb(15) + bytes([1])
                                                                 + uleb(5)) + end,
        'stream-abort': b'\x01' + hello + mig_rec(6, b'sender gave up'),
        'stream-two-rounds': b'\x01' + hello + rnd(0, 0) + mig_rec(3, p0) + rnd(1, 1)
                             + mig_rec(3, uleb(4) + bytes([3]) + uleb(len(delta)) + delta) + end,
    }
    try:
        import subprocess
        block = subprocess.run(['zstd', '-q', '-c', '-1'], input=raw + raw16[:4096],
                               capture_output=True, check=True).stdout
        body = (bytes([0, 5]) + uleb(1) + uleb(9) + uleb(1) + uleb(len(block)) + block)
        seeds['stream-zstd-block'] = b'\x01' + hello + rnd() + mig_rec(3, body) + end
    except (OSError, subprocess.CalledProcessError):
        pass
    return seeds


def main():
    sdir = os.path.join(HERE, 'corpus-migrate-stream')
    shutil.rmtree(sdir, ignore_errors=True)
    os.makedirs(sdir)
    for name, data in sorted(migrate_stream_seeds().items()):
        with open(os.path.join(sdir, name), 'wb') as f:
            f.write(data)
    mdir = os.path.join(HERE, 'corpus-migrate-delta')
    shutil.rmtree(mdir, ignore_errors=True)
    os.makedirs(mdir)
    for name, data in sorted(migrate_delta_seeds().items()):
        with open(os.path.join(mdir, name), 'wb') as f:
            f.write(data)
    cdir = os.path.join(HERE, 'corpus-rdma-conn')
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    for name, data in sorted(rdma_conn_seeds().items()):
        with open(os.path.join(cdir, name), 'wb') as f:
            f.write(data)
    wdir = os.path.join(HERE, 'corpus-wire')
    udir = os.path.join(HERE, 'corpus-uri')
    hdir = os.path.join(HERE, 'corpus-gfarm-helper')
    rdir = os.path.join(HERE, 'corpus-gfarm-routes')
    for d in (wdir, udir, hdir, rdir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    for name, data in sorted(wire_seeds().items()):
        with open(os.path.join(wdir, name), 'wb') as f:
            f.write(data)
    for i, uri in enumerate(URI_SEEDS):
        with open(os.path.join(udir, 'uri-%02d' % i), 'wb') as f:
            f.write(uri.encode())
    for name, data in sorted(gfarm_helper_seeds().items()):
        with open(os.path.join(hdir, name), 'wb') as f:
            f.write(data)
    for name, data in sorted(GFARM_ROUTES_SEEDS.items()):
        with open(os.path.join(rdir, name), 'wb') as f:
            f.write(data)
    print('%d wire seeds, %d URI seeds, %d gfarm helper seeds, %d gfarm routes seeds'
          % (len(wire_seeds()), len(URI_SEEDS), len(gfarm_helper_seeds()),
             len(GFARM_ROUTES_SEEDS)))


if __name__ == '__main__':
    main()
