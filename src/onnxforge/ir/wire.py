"""Parse a model file with its large weights read straight into arrays, not through protobuf.

Parsing a model with protobuf copies every weight into the parsed message, and reading a tensor's
``raw_data`` from Python copies it again, into a ``bytes`` object: two fresh copies of every weight, each
paid for page by page (light ResNet-50: ~45,000 page faults, ~100 ms of a ~200 ms session build).

Here the file is memory-mapped and its protobuf wire format walked just far enough to find the graph's
initializers (``ModelProto.graph`` = field 7, ``GraphProto.initializer`` = field 5) and, in each, its
``raw_data`` (``TensorProto`` field 9). Initializers with more than :data:`ASIDE_MIN_ELEMENTS` elements
have their ``raw_data`` left out of the bytes handed to protobuf (the lengths of the enclosing messages
re-encoded), and are copied once from the map into an array of their own: aligned, writable by nobody
(read-only), and freed on its own when the engine no longer needs it.

Anything unusual (a repeated ``graph`` field, groups, typed data beside ``raw_data``, a size that does
not match the dims, a big-endian host) leaves that tensor, or the whole file, to protobuf as before, so
the errors are the ones protobuf and onnx-ir give.
"""

from __future__ import annotations

import mmap
import sys
from collections import Counter
from collections.abc import Iterator

import numpy as np
import onnx

from onnxforge.ir.dtypes import PLAIN_RAW_TYPES

# Larger initializers are moved out of the protobuf; the same bound under which the type check keeps an
# initializer's values for onnx's data propagation (onnxforge.runtime.typecheck), so inference sees the same.
ASIDE_MIN_ELEMENTS = 4096

_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9
_TYPED_DATA_FIELDS = frozenset({4, 5, 6, 7, 10, 11})  # float_data, int32_data, ..., uint64_data
_TENSOR_DATA_LOCATION = 14
_LENGTH_DELIMITED = 2


class _Unusual(Exception):
    """The wire format holds something this scanner leaves to protobuf."""


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    if at < len(data) and data[at] < 0x80:  # most keys and small lengths: one byte
        return data[at], at + 1
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise _Unusual("truncated or overlong varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(data: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, payload start, payload end) of each field in data[start:end]."""
    at = start
    while at < end:
        field_start = at
        key, at = _varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, at = _varint(data, at)
            payload_start = payload_end = at
        elif wire_type == 1:
            payload_start, payload_end = at, at + 8
        elif wire_type == _LENGTH_DELIMITED:
            length, payload_start = _varint(data, at)
            payload_end = payload_start + length
        elif wire_type == 5:
            payload_start, payload_end = at, at + 4
        else:  # groups (3, 4) and invalid wire types
            raise _Unusual(f"wire type {wire_type}")
        if payload_end > end:
            raise _Unusual("field runs past its message")
        at = payload_end
        yield number, wire_type, field_start, payload_start, payload_end


def _raw_data_span(data: memoryview, start: int, end: int) -> tuple[int, int, int, int] | None:
    """(field start, field end, payload start, payload end) of a tensor's only ``raw_data``, if it may go aside."""
    found = None
    for number, wire_type, field_start, payload_start, payload_end in _fields(data, start, end):
        if number == _TENSOR_RAW_DATA and wire_type == _LENGTH_DELIMITED:
            if found is not None:
                return None  # repeated: protobuf keeps the last; leave that rule to protobuf
            found = (field_start, payload_end, payload_start, payload_end)
        elif number in _TYPED_DATA_FIELDS or number == _TENSOR_DATA_LOCATION:
            return None
    return found


def _length_delimited(number: int, body: list[bytes | memoryview]) -> list[bytes | memoryview]:
    size = sum(len(piece) for piece in body)
    return [_encode_varint((number << 3) | _LENGTH_DELIMITED), _encode_varint(size), *body]


def _graph_without_raw_data(
    data: memoryview, start: int, end: int
) -> tuple[list[bytes | memoryview], list[tuple[int, int, int]]]:
    """The graph message's pieces with big initializers' raw_data cut out, and (initializer index, payload
    start, payload end) of each cut."""
    pieces: list[bytes | memoryview] = []
    cuts: list[tuple[int, int, int]] = []
    index = 0
    for number, wire_type, field_start, payload_start, payload_end in _fields(data, start, end):
        if number != _GRAPH_INITIALIZER or wire_type != _LENGTH_DELIMITED:
            pieces.append(data[field_start:payload_end])
            continue
        # A tensor of fewer bytes than the bound's elements cannot qualify: no need to walk its fields.
        span = (
            _raw_data_span(data, payload_start, payload_end)
            if payload_end - payload_start > ASIDE_MIN_ELEMENTS
            else None
        )
        if span is None or span[3] - span[2] <= ASIDE_MIN_ELEMENTS:
            pieces.append(data[field_start:payload_end])
        else:
            cut_start, cut_end, raw_start, raw_end = span
            body = [data[payload_start:cut_start], data[cut_end:payload_end]]
            pieces.extend(_length_delimited(_GRAPH_INITIALIZER, body))
            cuts.append((index, raw_start, raw_end))
        index += 1
    return pieces, cuts


def _aside_array(tensor: onnx.TensorProto, raw: memoryview) -> np.ndarray | None:
    """A read-only copy of ``raw`` as the tensor's array, or None when its type or size is not plain."""
    dtype = PLAIN_RAW_TYPES.get(tensor.data_type)
    if dtype is None:
        return None
    dims = [int(d) for d in tensor.dims]
    count = 1
    for dim in dims:
        if dim < 0:
            return None
        count *= dim
    if count <= ASIDE_MIN_ELEMENTS or count * dtype.itemsize != len(raw):
        return None
    array = np.empty(count, dtype)
    array.view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
    array.flags.writeable = False
    return array.reshape(dims)


def parse_with_weights_aside(path: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The parsed model, its big initializers without data, and {initializer name: its array}.

    Raises what ``ModelProto.ParseFromString`` raises on a malformed file."""
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        # Every view of the map is released before the map closes (closing with views alive fails).
        with memoryview(mapped) as data:
            stripped, cuts = _stripped(data)
            proto = onnx.ModelProto()
            proto.ParseFromString(data if stripped is None else stripped)
            del stripped
            return proto, _set_aside(proto, data, cuts)


def _stripped(data: memoryview) -> tuple[bytes | None, list[tuple[int, int, int]]]:
    """The file without its big initializers' raw_data, and the cuts; (None, []) to parse the file as it is."""
    if sys.byteorder != "little":  # raw_data is little-endian
        return None, []
    try:
        graphs = [f for f in _fields(data, 0, len(data)) if f[0] == _MODEL_GRAPH and f[1] == _LENGTH_DELIMITED]
        if len(graphs) != 1:
            return None, []
        _, _, field_start, payload_start, payload_end = graphs[0]
        pieces, cuts = _graph_without_raw_data(data, payload_start, payload_end)
        if not cuts:
            return None, []
        return b"".join([data[:field_start], *_length_delimited(_MODEL_GRAPH, pieces), data[payload_end:]]), cuts
    except _Unusual:
        return None, []


def _set_aside(proto: onnx.ModelProto, data: memoryview, cuts: list[tuple[int, int, int]]) -> dict[str, np.ndarray]:
    initializers = proto.graph.initializer
    uses = Counter(tensor.name for tensor in initializers)
    aside: dict[str, np.ndarray] = {}
    for index, raw_start, raw_end in cuts:
        tensor = initializers[index]
        with data[raw_start:raw_end] as raw:
            array = _aside_array(tensor, raw) if uses[tensor.name] == 1 else None
            if array is None:  # back into the protobuf, for protobuf and onnx-ir to handle as they always did
                tensor.raw_data = bytes(raw)
            else:
                aside[tensor.name] = array
    return aside
