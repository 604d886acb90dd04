"""Strict conversion of parsed data (TOML, JSON) into frozen dataclasses.

Used for config files and for the JSON headers of model versions: every key must be
a field, every value must have the field's type, and each dataclass's
``__post_init__`` checks values with :func:`require`. Errors name the source and the
dotted key, as the caller's exception type.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Window:
...     size: int = 10
...     def __post_init__(self):
...         require(self.size > 0, "size", "> 0", self.size)
>>> from_mapping(Window, {"size": 3}, source="demo", error=ValueError)
Window(size=3)
>>> from_mapping(Window, {"size": -1}, source="demo", error=ValueError)
Traceback (most recent call last):
...
ValueError: demo: 'size' must be > 0, got -1
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Mapping, TypeVar

T = TypeVar("T")

SECRET_WORDS = ("password", "secret", "token", "jaas", "ssl.key")
"""A key holding one of these is a secret: its value never appears in an error message or log."""


def shown(key: str, value: Any) -> str:
    """``value`` as an error message may quote it: ``'***'`` for a secret key.

    >>> shown("redis.password", "hunter2"), shown("labeler.max_batch", -1)
    ("'***'", '-1')
    """
    return "'***'" if any(word in key.lower() for word in SECRET_WORDS) else repr(value)


class InvalidValue(ValueError):
    """A field's value is impossible; :func:`from_mapping` adds the source and section."""

    def __init__(self, key: str, expected: str, value: Any) -> None:
        super().__init__(f"'{key}' must be {expected}, got {shown(key, value)}")
        self.key, self.expected, self.value = key, expected, value


def require(condition: bool, key: str, expected: str, value: Any) -> None:
    """Raise :class:`InvalidValue` for ``key`` unless ``condition`` holds."""
    if not condition:
        raise InvalidValue(key, expected, value)


def from_mapping(cls: type[T], data: Any, *, source: str, error: type[Exception], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; raise ``error`` naming ``source`` and the key."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, Mapping):
        raise error(f"{source}: '{where}' must be a table, got {shown(where, data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise error(f"{source}: unknown key '{prefix}{key}' (expected one of: {', '.join(sorted(fields))})")
    kwargs = {key: _coerce(hints[key], value, source, error, prefix + key) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except InvalidValue as exc:
        raise error(f"{source}: '{prefix}{exc.key}' must be {exc.expected}, got {shown(exc.key, exc.value)}") from None
    except TypeError as exc:  # a required field is missing
        raise error(f"{source}: '{where}': {exc}") from None


def _coerce(hint: Any, value: Any, source: str, error: type[Exception], key: str) -> Any:
    """Check ``value`` against the type ``hint``; return it in the field's type."""
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, source=source, error=error, prefix=key + ".")
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def wrong(expected: str) -> Exception:
        return error(f"{source}: '{key}' must be {expected}, got {shown(key, value)}")

    if origin is Literal:
        if value not in args:
            raise wrong("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[:-1]:
            try:
                return _coerce(option, value, source, error, key)
            except error:
                continue
        return _coerce(inner[-1], value, source, error, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise wrong("a list")
        return tuple(_coerce(args[0], item, source, error, key) for item in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise wrong("a table")
        return {str(k): _coerce(args[1], v, source, error, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    raise TypeError(f"unsupported field type {hint!r} for {key}")
