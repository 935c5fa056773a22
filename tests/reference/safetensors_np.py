"""Minimal safetensors reader/writer on numpy (no `safetensors` package on this machine).

File layout (https://github.com/huggingface/safetensors, "Format"):
  8 bytes   little-endian u64 N = length of the JSON header
  N bytes   JSON {name: {"dtype": str, "shape": [..], "data_offsets": [begin, end]}, ...,
                  optional "__metadata__": {str: str}}
  rest      raw little-endian tensor bytes; offsets are relative to the start of this block.

Reading returns float32 for the float formats that numpy lacks (BF16, F8_E4M3, F8_E5M2),
decoded exactly (every such value is representable in float32).
"""

import json
import struct

import numpy as np

# dtypes numpy can hold natively, little-endian.
_NATIVE = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
# (numpy kind, itemsize) -> safetensors name, for writing plain arrays.
_NAME_OF = {(v.kind, v.itemsize): k for k, v in _NATIVE.items()}


def _e4m3_table():
    """OCP E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities, S.1111.111 = NaN."""
    table = np.empty(256, np.float32)
    for byte in range(256):
        sign = -1.0 if byte & 0x80 else 1.0
        exp = (byte >> 3) & 0xF
        man = byte & 0x7
        if exp == 0xF and man == 0x7:
            value = float("nan")
        elif exp == 0:
            value = (man / 8.0) * 2.0 ** -6  # subnormal
        else:
            value = (1.0 + man / 8.0) * 2.0 ** (exp - 7)
        table[byte] = sign * value
    return table


def _e5m2_table():
    """OCP E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa; IEEE-like inf/NaN at exponent 31."""
    table = np.empty(256, np.float32)
    for byte in range(256):
        sign = -1.0 if byte & 0x80 else 1.0
        exp = (byte >> 2) & 0x1F
        man = byte & 0x3
        if exp == 0x1F:
            value = float("inf") if man == 0 else float("nan")
        elif exp == 0:
            value = (man / 4.0) * 2.0 ** -14
        else:
            value = (1.0 + man / 4.0) * 2.0 ** (exp - 15)
        table[byte] = sign * value
    return table


E4M3_TO_F32 = _e4m3_table()
E5M2_TO_F32 = _e5m2_table()
_ITEMSIZE = {**{k: v.itemsize for k, v in _NATIVE.items()}, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}


def bf16_bits_to_f32(bits):
    """BF16 is the top half of an FP32: shift the 16 bits up."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    """Round-to-nearest-even FP32 -> BF16 bits (NaN kept quiet)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x)
    rounded = np.where(nan, (u >> 16) | 0x40, rounded)
    return rounded.astype(np.uint16)


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    return header, 8 + n


def load(path, raw=False):
    """Return {name: np.ndarray}. With raw=True, BF16/F8 tensors are returned as their
    unsigned integer bits instead of decoded float32."""
    header, data_start = read_header(path)
    with open(path, "rb") as f:
        blob = f.read()
    data = memoryview(blob)[data_start:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info["dtype"], tuple(info["shape"])
        begin, end = info["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        if dtype not in _ITEMSIZE:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if end - begin != count * _ITEMSIZE[dtype]:
            raise ValueError(f"{path}: tensor {name!r} byte range {begin}..{end} does not match "
                             f"shape {list(shape)} of {dtype}")
        chunk = data[begin:end]
        if dtype in _NATIVE:
            arr = np.frombuffer(chunk, _NATIVE[dtype]).copy()
        elif dtype == "BF16":
            bits = np.frombuffer(chunk, "<u2").copy()
            arr = bits if raw else bf16_bits_to_f32(bits)
        else:  # F8_E4M3 / F8_E5M2
            bits = np.frombuffer(chunk, np.uint8).copy()
            table = E4M3_TO_F32 if dtype == "F8_E4M3" else E5M2_TO_F32
            arr = bits if raw else table[bits]
        out[name] = arr.reshape(shape)
    return out


def load_metadata(path):
    return read_header(path)[0].get("__metadata__", {})


def save(path, tensors, metadata=None):
    """Write {name: array | (dtype_name, array)}. Plain arrays keep their numpy dtype
    (float32 / int32 / ...); a tuple ("BF16", float array) converts, and ("BF16" | "F8_E4M3" |
    "F8_E5M2", unsigned-integer bits) writes the bits as they are."""
    header = {}
    chunks = []
    offset = 0
    for name in tensors:
        value = tensors[name]
        if isinstance(value, tuple):
            dtype, arr = value
            arr = np.asarray(arr)
            if dtype == "BF16":
                bits = arr.astype(np.uint16) if arr.dtype == np.uint16 else f32_to_bf16_bits(arr)
                payload = bits.astype("<u2").tobytes()
            elif dtype in ("F8_E4M3", "F8_E5M2"):
                if arr.dtype != np.uint8:
                    raise ValueError(f"{name}: {dtype} must be given as uint8 bits")
                payload = arr.tobytes()
            else:
                arr = arr.astype(_NATIVE[dtype])
                payload = arr.tobytes()
        else:
            arr = np.asarray(value)
            key = (arr.dtype.kind, arr.dtype.itemsize)
            if key not in _NAME_OF:
                raise ValueError(f"{name}: numpy dtype {arr.dtype} has no safetensors name")
            dtype = _NAME_OF[key]
            payload = np.ascontiguousarray(arr, _NATIVE[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(payload)]}
        chunks.append(payload)
        offset += len(payload)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # align the data block to 8 bytes, as the spec's writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for payload in chunks:
            f.write(payload)
