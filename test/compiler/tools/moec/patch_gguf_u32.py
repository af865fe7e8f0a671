#!/usr/bin/env python3
"""patch_gguf_u32.py IN OUT KEY VALUE: copies a GGUF file, replacing the
value of the u32 metadata KEY (found by its serialized name) with VALUE, to
build files whose hyper-parameters disagree with their tensors."""
import struct
import sys

src, dst, key, value = sys.argv[1], sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])
data = bytearray(open(src, "rb").read())
needle = struct.pack("<Q", len(key)) + key + struct.pack("<I", 4)
at = data.find(needle)
if at < 0:
    sys.exit(f"{key.decode()} (u32) not found in {src}")
at += len(needle)
data[at:at + 4] = struct.pack("<I", value)
open(dst, "wb").write(data)
