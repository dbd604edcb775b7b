#!/usr/bin/env python3
"""Independent reference for the golden vectors in src/hash.rs.

A transcription of Linux's jhash2() (include/linux/jhash.h, Bob Jenkins'
lookup3) and of EdgeLB's flow-hash word layout, written separately from the
Rust code so the two can be compared. Run: python3 tests/jhash_reference.py
"""
import ipaddress
import struct

M = 0xFFFFFFFF


def rol(x, k):
    return ((x << k) | (x >> (32 - k))) & M


def mix(a, b, c):
    a = (a - c) & M; a ^= rol(c, 4); c = (c + b) & M
    b = (b - a) & M; b ^= rol(a, 6); a = (a + c) & M
    c = (c - b) & M; c ^= rol(b, 8); b = (b + a) & M
    a = (a - c) & M; a ^= rol(c, 16); c = (c + b) & M
    b = (b - a) & M; b ^= rol(a, 19); a = (a + c) & M
    c = (c - b) & M; c ^= rol(b, 4); b = (b + a) & M
    return a, b, c


def final(a, b, c):
    c ^= b; c = (c - rol(b, 14)) & M
    a ^= c; a = (a - rol(c, 11)) & M
    b ^= a; b = (b - rol(a, 25)) & M
    c ^= b; c = (c - rol(b, 16)) & M
    a ^= c; a = (a - rol(c, 4)) & M
    b ^= a; b = (b - rol(a, 14)) & M
    c ^= b; c = (c - rol(b, 24)) & M
    return a, b, c


def jhash2(k, initval):
    length = len(k)
    a = b = c = (0xDEADBEEF + (length << 2) + initval) & M
    i = 0
    while length > 3:
        a = (a + k[i]) & M; b = (b + k[i + 1]) & M; c = (c + k[i + 2]) & M
        a, b, c = mix(a, b, c)
        length -= 3; i += 3
    if length == 3:
        c = (c + k[i + 2]) & M
    if length >= 2:
        b = (b + k[i + 1]) & M
    if length >= 1:
        a = (a + k[i]) & M
        a, b, c = final(a, b, c)
    return c


def addr_words(s):
    packed = ipaddress.ip_address(s).packed.ljust(16, b"\0")
    return list(struct.unpack("<4I", packed))


def flow_hash(src, dst, sport, dport, proto, seed, no_sport=False, dport_only=False):
    src_w = [0, 0, 0, 0] if dport_only else addr_words(src)
    sp = 0 if (no_sport or dport_only) else sport
    ports = struct.unpack("<I", struct.pack(">HH", sp, dport))[0]
    return jhash2(src_w + addr_words(dst) + [ports, proto], seed)


if __name__ == "__main__":
    print("jhash zeros      %#010x" % jhash2([0] * 10, 0))
    print("jhash 1..10      %#010x" % jhash2(list(range(1, 11)), 0))
    print("jhash ones       %#010x" % jhash2([M] * 10, 0x12345678))
    k4 = ("192.0.2.10", "203.0.113.7", 40000, 80, 6)
    k6 = ("2001:db8::10", "2001:db8:ffff::7", 40000, 443, 17)
    print("k4 seed 0        %#010x" % flow_hash(*k4, 0))
    print("k4 seed deadbeef %#010x" % flow_hash(*k4, 0xDEADBEEF))
    print("k6 seed 7        %#010x" % flow_hash(*k6, 7))
    print("k4 no sport      %#010x" % flow_hash(*k4, 7, no_sport=True))
    print("k4 dport only    %#010x" % flow_hash(*k4, 7, dport_only=True))
