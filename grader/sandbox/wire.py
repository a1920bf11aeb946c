"""The message format between the trusted parent and the sandboxed child.

A message is a JSON header followed by raw tensor buffers. Nothing is ever unpickled: the
parent must be able to read what an untrusted child sends without running any of its code.
Tensors inside the JSON payload are replaced by {"$tensor": i}, and their dtype, shape and
byte count are checked before the bytes are reinterpreted.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time

import torch

MAX_MESSAGE_BYTES = 512 * 2**20
MAX_HEADER_BYTES = 4 * 2**20  # an honest answer's JSON is kilobytes (a DeepLab parameter list: 30 KB)

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_LEN = struct.Struct("<Q")


class WireError(Exception):
    """A message that does not follow the format (a lying or broken child)."""


def encode(payload) -> bytes:
    buffers: list[bytes] = []
    descs: list[dict] = []

    def walk(value):
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            if t.dtype not in _NAMES:
                t = t.to(torch.float32)
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            descs.append({"dtype": _NAMES[t.dtype], "shape": list(t.shape), "nbytes": len(raw)})
            buffers.append(raw)
            return {"$tensor": len(descs) - 1}
        if isinstance(value, dict):
            return {str(k): walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, float) and not math.isfinite(value):
            return {"$float": repr(value)}
        return value

    header = json.dumps({"payload": walk(payload), "tensors": descs}).encode()
    return _LEN.pack(len(header)) + header + b"".join(buffers)


def decode(message: bytes):
    """Parse a message; anything malformed raises WireError, never another exception."""
    try:
        return _decode(message)
    except WireError:
        raise
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        IndexError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise WireError(f"malformed message ({type(exc).__name__}: {exc})"[:300])


def _decode(message: bytes):
    if len(message) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(message)} bytes is over the limit")
    if len(message) < _LEN.size:
        raise WireError("truncated message")
    (hlen,) = _LEN.unpack_from(message)
    if hlen > MAX_HEADER_BYTES or _LEN.size + hlen > len(message):
        raise WireError("bad header length")
    try:
        header = json.loads(message[_LEN.size : _LEN.size + hlen])
        descs = header["tensors"]
        payload = header["payload"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"unreadable header: {exc}")
    tensors = []
    offset = _LEN.size + hlen
    for desc in descs:
        tensors.append(_read_tensor(message, offset, desc))
        offset += desc["nbytes"]
    if offset != len(message):
        raise WireError("trailing bytes after the tensors")

    def walk(value):
        if isinstance(value, dict):
            if set(value) == {"$tensor"}:
                index = value["$tensor"]
                if not isinstance(index, int) or not 0 <= index < len(tensors):
                    raise WireError("bad tensor reference")
                return tensors[index]
            if set(value) == {"$float"}:
                return float(value["$float"])
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(payload)


def _read_tensor(message: bytes, offset: int, desc) -> torch.Tensor:
    try:
        dtype = _DTYPES[desc["dtype"]]
        shape = [int(d) for d in desc["shape"]]
        nbytes = int(desc["nbytes"])
    except (KeyError, TypeError, ValueError):
        raise WireError(f"bad tensor description {desc!r:.200}")
    if any(d < 0 for d in shape) or len(shape) > 8:
        raise WireError("bad tensor shape")
    itemsize = torch.empty((), dtype=dtype).element_size()
    if math.prod(shape) * itemsize != nbytes or offset + nbytes > len(message):
        raise WireError("tensor size does not match its shape")
    if nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    raw = bytearray(message[offset : offset + nbytes])
    return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape)


# -- framing over a descriptor ------------------------------------------------------------------
# Every message travels as an 8-byte length and the message. The parent's side passes a
# deadline: it never waits longer, whatever the child does (sends half a frame and sleeps,
# stops itself, leaves its end full), so a hostile child costs one request's time limit.


def send_frame(fd: int, data: bytes, deadline: float | None = None) -> None:
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        if deadline is not None:
            _wait(fd, deadline, write=True)
        try:
            sent = os.write(fd, view[: 1 << 20])
        except BlockingIOError:
            continue
        view = view[sent:]


def recv_frame(fd: int, deadline: float | None = None, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    (length,) = _LEN.unpack(_read_exactly(fd, _LEN.size, deadline))
    if length > limit:
        raise WireError(f"message of {length} bytes is over the limit")
    return _read_exactly(fd, length, deadline)


def _read_exactly(fd: int, count: int, deadline: float | None) -> bytes:
    chunks, left = [], count
    while left:
        if deadline is not None:
            _wait(fd, deadline, write=False)
        try:
            chunk = os.read(fd, min(left, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the other end closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _wait(fd: int, deadline: float, write: bool) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    if not poller.poll(left * 1000):
        raise TimeoutError


def wait_closed(fd: int, deadline: float) -> None:
    """Wait until every holder of the far end of socket `fd` has closed it (unread data is
    dropped)."""
    while True:
        try:
            if not os.read(fd, 1 << 16):
                return
        except BlockingIOError:
            _wait(fd, deadline, write=False)
