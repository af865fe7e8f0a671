#!/usr/bin/env python3
"""patch_gguf_tensor_type.py IN OUT TENSOR TYPE_ID: copies a GGUF file,
changing the ggml type id in TENSOR's info (found by its serialized name) to
TYPE_ID. Used with types of the same block size and bytes (Q4_0 -> IQ4_NL),
so that the file stays well-formed and only the type is new."""
import struct
import sys

src, dst, name, type_id = sys.argv[1], sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])
data = bytearray(open(src, "rb").read())
needle = struct.pack("<Q", len(name)) + name
at = data.find(needle)
if at < 0:
    sys.exit(f"tensor {name.decode()} not found in {src}")
at += len(needle)
(n_dims,) = struct.unpack_from("<I", data, at)
at += 4 + 8 * n_dims
struct.pack_into("<I", data, at, type_id)
open(dst, "wb").write(data)
