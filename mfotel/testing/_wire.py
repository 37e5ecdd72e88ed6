"""A small protobuf wire-format reader, for vendor payloads whose schemas ship as .proto files only.

``fields(data)`` yields ``(number, wire_type, value)``; ``decode(data, schema)`` turns a message
into a dict by a schema naming the fields that matter: ``{number: (name, kind)}`` where kind
is ``"string"``, ``"bytes"``, ``"int"``, ``"uint"``, ``"sint"``, ``"double"``, ``"float"``,
``"bool"``, a nested schema dict, or ``("map", key_kind, value_kind)``. Repeated fields come
back as lists when the name ends with ``[]``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any, Union

Schema = Mapping[int, tuple[str, Any]]
Kind = Union[str, Mapping[int, tuple[str, Any]], tuple[str, Any, Any]]


class WireError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise WireError("truncated field")
        yield number, wire, value


def _scalar(kind: Kind, wire: int, value: Any) -> Any:
    if isinstance(kind, Mapping):
        return decode(value, kind)
    if isinstance(kind, tuple):  # ("map", key_kind, value_kind): one entry
        entry = decode(value, {1: ("k", kind[1]), 2: ("v", kind[2])})
        return entry.get("k"), entry.get("v")
    if kind == "string":
        return bytes(value).decode("utf-8")
    if kind == "bytes":
        return bytes(value)
    if kind == "uint":
        return int(value)
    if kind == "int":
        v = int(value)
        return v - (1 << 64) if v >= 1 << 63 else v
    if kind == "sint":
        v = int(value)
        return (v >> 1) ^ -(v & 1)
    if kind == "bool":
        return bool(value)
    if kind == "double":
        return struct.unpack("<d", value)[0]
    if kind == "float":
        return struct.unpack("<f", value)[0]
    raise WireError(f"unknown kind {kind!r}")


def decode(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, wire, value in fields(data):
        spec = schema.get(number)
        if spec is None:
            continue
        name, kind = spec
        repeated = name.endswith("[]")
        key = name.rstrip("[]")
        if repeated and wire == 2 and kind in ("int", "uint", "sint", "double", "float", "bool"):
            out.setdefault(key, []).extend(_packed(kind, value))
            continue
        item = _scalar(kind, wire, value)
        if isinstance(kind, tuple):
            out.setdefault(key, {})[item[0]] = item[1]
        elif repeated:
            out.setdefault(key, []).append(item)
        else:
            out[key] = item
    return out


def _packed(kind: str, data: bytes) -> list[Any]:
    if kind == "double":
        return list(struct.unpack(f"<{len(data) // 8}d", data))
    if kind == "float":
        return list(struct.unpack(f"<{len(data) // 4}f", data))
    values, pos = [], 0
    while pos < len(data):
        v, pos = _varint(data, pos)
        values.append(_scalar(kind, 0, v))
    return values
