"""Shape checks for the versioned JSON files under ``.gates/``.

Each raises ``ValueError`` naming the file part (``what``), the key and the
value; the store reads a file whose decoder raised as absent (SPEC, Files).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from supervisor.model import FORMAT_VERSION


def as_object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
    return data


def check_version(data: Mapping[str, Any], what: str) -> None:
    version = data.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(f"{what}: unsupported version {version!r} (expected {FORMAT_VERSION})")


def str_field(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{what}: `{key}` must be a string, got {value!r}")
    return value


def int_field(data: Mapping[str, Any], key: str, what: str) -> int:
    value = data.get(key)
    if type(value) is not int or value < 0:
        raise ValueError(f"{what}: `{key}` must be a non-negative integer, got {value!r}")
    return value


def seconds_value(value: object, key: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what}: `{key}` must be a number, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what}: `{key}` must be finite and >= 0, got {value!r}")
    return seconds


def opt_seconds_field(data: Mapping[str, Any], key: str, what: str) -> float | None:
    value = data.get(key)
    return None if value is None else seconds_value(value, key, what)


def list_field(data: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{what}: `{key}` must be a list, got {type(value).__name__}")
    return value


def strs_field(data: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    values = list_field(data, key, what)
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"{what}: `{key}` must hold strings only")
    return tuple(values)
