"""benchlink_device against tests/vectors/frames.txt (the vectors the Rust codec
and the C library check too): every vector re-encodes to the same bytes, and
the decoder finds exactly that frame in every split, after noise.

    vectors.py PATH/frames.txt
"""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchlink_device import _Decoder, encode  # noqa: E402

failures = vectors = splits = 0
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    name, hexed = line.split()[:2]
    frame = bytes.fromhex(hexed)
    vectors += 1
    kind, flags, length = struct.unpack_from("<BBI", frame, 2)
    payload = frame[10 : 10 + length]
    if encode(kind, payload, flags) != frame:
        print("FAIL re-encode:", name)
        failures += 1
    for cut in range(len(frame) + 1):
        d = _Decoder()
        got = []
        for part in (b"\x00\xa5\x13\xa5", frame[:cut], frame[cut:]):
            d.feed(part)
            got += d.frames()
        splits += 1
        if got != [(kind, flags, payload)]:
            print("FAIL decode at split", cut, "of", name, got)
            failures += 1
            break
if failures or not vectors:
    sys.exit("%d failures in %d vectors" % (failures, vectors))
print("%d vectors, %d splits: ok" % (vectors, splits))
