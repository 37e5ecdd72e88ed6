"""Decode protobuf payloads by a small schema, for vendor payloads that ship as .proto files only.

``decode(data, schema)`` turns a message into a dict by a schema naming the fields that matter:
``{number: (name, kind)}`` where kind is ``"string"``, ``"bytes"``, ``"int"``, ``"uint"``,
``"double"``, ``"float"``, ``"bool"``, a nested schema dict, or ``("map", key_kind, value_kind)``.
Repeated fields come back as lists when the name ends with ``[]``. The wire format itself is
read by the transport's reader.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Union

from mfotel._internal.otlp.wire import fields, varint

Schema = Mapping[int, tuple[str, Any]]
Kind = Union[str, Mapping[int, tuple[str, Any]], tuple[str, Any, Any]]
_NUMERIC = ("int", "uint", "double", "float", "bool")


def _scalar(kind: Kind, value: Any) -> Any:
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
    if kind == "bool":
        return bool(value)
    if kind == "double":
        return struct.unpack("<d", value)[0]
    if kind == "float":
        return struct.unpack("<f", value)[0]
    raise ValueError(f"unknown kind {kind!r}")


def decode(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, wire, value in fields(data):
        spec = schema.get(number)
        if spec is None:
            continue
        name, kind = spec
        repeated = name.endswith("[]")
        key = name.rstrip("[]")
        if repeated and wire == 2 and kind in _NUMERIC:
            out.setdefault(key, []).extend(_packed(str(kind), bytes(value)))
            continue
        item = _scalar(kind, value)
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
        v, pos = varint(data, pos)
        values.append(_scalar(kind, v))
    return values
