"""Framing for the sandbox's sockets: a JSON header and an optional `.npz` blob per message.

Frame: 4-byte big-endian header length, 8-byte blob length, header (UTF-8 JSON), blob.
Both sides read with hard size limits, so a hostile peer can make a read fail but not exhaust
memory: the frame's lengths are capped before anything is read, and an `.npz` blob is inflated
only after every member's header (shape x itemsize) has been checked against a per-array and a
total cap, because zip compresses zeros a thousandfold and a header can claim anything. Only
number and boolean arrays load, with allow_pickle=False, so no object can be smuggled across.
A frame whose arrays are refused is still read whole, so the stream stays in step: `recv` returns
its header with a `RefusedArrays` (empty, with the reason) instead of the arrays.
"""
from __future__ import annotations

import io
import json
import math
import struct
import zipfile

import numpy as np

MAX_HEADER = 4 << 20         # tracebacks and cell sources fit comfortably
MAX_ARRAY_BYTES = 64 << 20   # one array, inflated: far above any check's (the largest are ~4 MB)
MAX_TOTAL_BYTES = 128 << 20  # all arrays of one frame, inflated
MAX_ARRAYS = 256
MAX_BLOB = MAX_TOTAL_BYTES + (4 << 20)   # np.savez stores arrays uncompressed: headers and zip overhead
NUMBER_KINDS = "biufc"       # bool, int, uint, float, complex: no strings, no structured records
_PREFIX = struct.Struct(">IQ")


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed frame, or hung up."""


class RefusedArrays(dict):
    """In place of a frame's arrays: none, and why they were not loaded."""

    def __init__(self, reason: str):
        super().__init__()
        self.reason = reason


class _TooLarge(Exception):
    pass


def _recv_exact(sock, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ProtocolError("connection closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    if not arrays:
        return b""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple, np.dtype]:
    """Shape and dtype from an .npy member's header; inflates only the header's few bytes."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy format version {version}")
    return shape, dtype


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """The arrays of an .npz blob; RefusedArrays if they would inflate beyond the caps."""
    if not blob:
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ARRAYS:
                raise _TooLarge(f"{len(infos)} arrays, over the limit of {MAX_ARRAYS}")
            total = 0
            for info in infos:
                shape, dtype = _member_header(zf, info)
                if dtype.kind not in NUMBER_KINDS or dtype.hasobject:
                    raise ValueError(f"dtype {dtype.str!r} is not a number type")
                size = math.prod(shape) * dtype.itemsize   # Python ints: a claim cannot overflow
                total += size
                if size > MAX_ARRAY_BYTES or total > MAX_TOTAL_BYTES:
                    raise _TooLarge(f"an array of {size / 2**20:.0f} MB, {total / 2**20:.0f} MB in all "
                                    f"(the limits are {MAX_ARRAY_BYTES >> 20} MB and {MAX_TOTAL_BYTES >> 20} MB)")
            out = {}
            for info in infos:
                with zf.open(info) as f:
                    out[info.filename.removesuffix(".npy")] = np.lib.format.read_array(f, allow_pickle=False)
            return out
    except _TooLarge as exc:
        return RefusedArrays(f"the returned arrays are too large: {exc}")
    except Exception as exc:   # malformed or pickled payload: the peer's fault, not ours
        raise ProtocolError(f"bad array payload: {type(exc).__name__}") from None


def send(sock, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    head = json.dumps(header).encode()
    blob = pack_arrays(arrays or {})
    sock.sendall(_PREFIX.pack(len(head), len(blob)) + head + blob)


def recv(sock) -> tuple[dict, dict[str, np.ndarray]]:
    head_len, blob_len = _PREFIX.unpack(_recv_exact(sock, _PREFIX.size))
    if head_len > MAX_HEADER or blob_len > MAX_BLOB:
        raise ProtocolError(f"frame too large ({head_len} + {blob_len} bytes)")
    try:
        header = json.loads(_recv_exact(sock, head_len))
    except (ValueError, RecursionError, MemoryError):   # a header nested 100,000 deep included
        raise ProtocolError("header is not JSON the grader can read") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    return header, unpack_arrays(_recv_exact(sock, blob_len) if blob_len else b"")
