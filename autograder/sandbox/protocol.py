"""Framing for the sandbox's sockets: a JSON header and an optional `.npz` blob per message.

Frame: 4-byte big-endian header length, 8-byte blob length, header (UTF-8 JSON), blob.
Both sides read with hard size limits, so a hostile peer can make a read fail but not exhaust
memory; `.npz` is loaded with allow_pickle=False, so no object can be smuggled across.
"""
from __future__ import annotations

import io
import json
import struct

import numpy as np

MAX_HEADER = 4 << 20     # tracebacks and cell sources fit comfortably
MAX_BLOB = 512 << 20     # the largest array a check sends or expects back is far smaller
_PREFIX = struct.Struct(">IQ")


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed frame, or hung up."""


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


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    if not blob:
        return {}
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except Exception as exc:  # a malformed or pickled payload is the peer's fault, not ours
        raise ProtocolError(f"bad array payload: {exc}") from None


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
    except ValueError:
        raise ProtocolError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    return header, unpack_arrays(_recv_exact(sock, blob_len) if blob_len else b"")
