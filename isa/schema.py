"""One generic loader from plain data (parsed YAML/JSON) to frozen dataclasses.

The loader is driven by the dataclasses' type hints, so every config class (chip, energy table,
CPU baseline, ...) is loaded the same way and reports problems the same way. It supports
``int``, ``float`` (ints are accepted and converted), ``bool`` (a real bool only: ints are not
bools and bools are not ints), ``str``, ``X | None``, unions, ``Literal[...]``, enums (by value),
nested dataclasses, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]`` and ``dict[str, X]``.

Numbers are checked before any use: a float must be finite (NaN and infinities are refused,
whatever the field) and an int must lie within +-``MAX_INT`` (2**53, exact in a float64 and far
from numpy's int64 overflow), so no later arithmetic can turn a typo into a silently wrong
figure or a crash. Ranges particular to a field are its dataclass's ``problems()``.

Every problem is collected, never just the first: type errors, unknown keys (with a
"did you mean" suggestion), missing required keys, and the semantic ``problems()`` of each
dataclass that was built successfully, each with its full dotted key path. They are raised
together as one :class:`~isa.errors.ConfigError`::

    invalid config configs/chips/onyx.yaml:
      array.cols: expected int, got 'four'
      pe.compare_cycle: unknown key (did you mean compare_cycles?)
      glb.size_bytes: required key missing

Standard library only (the ``isa`` package may import nothing but numpy); YAML parsing lives in
``simulator.config``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import functools
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from isa.errors import ConfigError

__all__ = [
    "Problem",
    "apply_overrides",
    "build_dataclass",
    "format_problems",
    "MAX_INT",
    "load_dataclass",
    "parse_literal",
    "to_dict",
]

T = TypeVar("T")

Problem = tuple[str, str]
"""A config problem: (dotted key path, message)."""

MAX_INT = 2**53
"""Largest magnitude of an int in a config (exact as a float64; int64 arithmetic on a few
such values cannot overflow unnoticed)."""

TOP_LEVEL = "(top level)"
"""The key path used for a problem with the whole document."""


class _Failed:
    """Sentinel: a value could not be converted (its problems are already recorded)."""

    def __repr__(self) -> str:
        return "<failed>"


_FAILED: Any = _Failed()


# ---------------------------------------------------------------------------------------------
# Public API


def load_dataclass(cls: type[T], data: Any, *, where: str) -> T:
    """Build ``cls`` from ``data`` or raise one ConfigError listing every problem.

    ``where`` names the source (usually a file path) on the first line of the message.
    """
    instance, problems = build_dataclass(cls, data)
    if problems or instance is None:
        raise ConfigError(format_problems(where, problems))
    return instance


def build_dataclass(cls: type[T], data: Any) -> tuple[T | None, list[Problem]]:
    """Build ``cls`` from ``data``; return (instance or None, all problems found).

    The instance is None whenever it could not be constructed (a type error or a missing key
    anywhere in it). Unknown keys and semantic problems do not prevent construction: they are
    listed, and the instance built without the unknown keys is returned, so callers that want
    to inspect it still can. ``load_dataclass`` raises on any problem at all.
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"build_dataclass needs a dataclass type, got {cls!r}")
    problems: list[Problem] = []
    value = _convert(cls, data, "", problems)
    return (None if value is _FAILED else value), problems


def format_problems(where: str, problems: Iterable[Problem]) -> str:
    """The text of a ConfigError: a header naming ``where`` and one indented line per problem."""
    lines = [f"invalid config {where}:"]
    lines += [f"  {path or TOP_LEVEL}: {message}" for path, message in problems]
    return "\n".join(lines)


def parse_literal(text: str) -> Any:
    """Parse an override value: int, float, true/false, null, otherwise the string itself.

    A small, YAML-free stand-in for ``yaml.safe_load`` of a scalar.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered in ("null", "none", "~"):
        return None
    for convert in (int, float):
        try:
            return convert(stripped)
        except ValueError:
            pass
    return stripped


def apply_overrides(
    data: Mapping[str, Any],
    overrides: Sequence[str],
    *,
    where: str,
    parse: Callable[[str], Any] = parse_literal,
) -> dict[str, Any]:
    """Return a deep copy of ``data`` with ``key.path=value`` overrides set into it.

    Values are parsed with ``parse``. Keys are not checked here: an override of an unknown key
    is set into the dict so that :func:`load_dataclass` reports it like a misspelling in the
    file. Intermediate mappings are created when absent (e.g. for a defaulted nested section).
    A malformed override (no ``=``, an empty key path, or a path through a non-mapping) raises
    one ConfigError naming every such override.
    """
    result: dict[str, Any] = copy.deepcopy(dict(data))
    problems: list[Problem] = []
    for item in overrides:
        label = f"override {item!r}"
        key_text, sep, value_text = item.partition("=")
        parts = [p.strip() for p in key_text.split(".")]
        if not sep:
            problems.append((label, "expected key.path=value"))
            continue
        if not all(parts):
            problems.append((label, "empty key in key.path=value"))
            continue
        try:
            value = parse(value_text)
        except ValueError as exc:  # a parser may reject malformed text
            problems.append((label, f"cannot parse value: {exc}"))
            continue
        node: dict[str, Any] = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                path = ".".join(parts[: depth + 1])
                problems.append((label, f"{path} holds {_shown(child)}, not a mapping"))
                break
            node = child
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(format_problems(where, problems))
    return result


def to_dict(instance: Any) -> Any:
    """Plain data for a dataclass instance (like ``dataclasses.asdict``) that loads back.

    Only init fields are kept; tuples become lists and enums their values, so the result can
    be dumped with ``yaml.safe_dump`` or ``json.dumps`` and read back by :func:`load_dataclass`.
    """
    if dataclasses.is_dataclass(instance) and not isinstance(instance, type):
        return {f.name: to_dict(getattr(instance, f.name))
                for f in dataclasses.fields(instance) if f.init}
    if isinstance(instance, enum.Enum):
        return to_dict(instance.value)
    if isinstance(instance, Mapping):
        return {k: to_dict(v) for k, v in instance.items()}
    if isinstance(instance, (list, tuple)):
        return [to_dict(v) for v in instance]
    return instance


# ---------------------------------------------------------------------------------------------
# Conversion


def _join(path: str, key: str) -> str:
    """``path.key``, where either part may be empty."""
    if not path:
        return key
    return f"{path}.{key}" if key else path


def _kind(value: Any) -> str:
    """A short user-facing name for the type of a parsed value."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _shown(value: Any) -> str:
    """How a wrong value appears in a message: scalars by repr, containers by kind."""
    if isinstance(value, (Mapping, list, tuple)):
        return f"a {_kind(value)}"
    if value is None:
        return "null"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**40:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    """A user-facing name for an annotation (``int``, ``list of int``, ``int or null``)."""
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return "a mapping"
        if issubclass(tp, enum.Enum):
            return "one of " + ", ".join(repr(m.value) for m in tp)
        return tp.__name__
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin in (list, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} items"
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    return str(tp)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass (cached: classes are immutable here)."""
    return typing.get_type_hints(cls)


def _convert(tp: Any, value: Any, path: str, problems: list[Problem]) -> Any:
    """Convert ``value`` to type ``tp``; record problems under ``path``; _FAILED on failure."""
    if tp is Any or tp is object:
        return value
    if tp is type(None):
        if value is None:
            return None
        problems.append((path, f"expected null, got {_shown(value)}"))
        return _FAILED
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _convert_dataclass(tp, value, path, problems)
        if issubclass(tp, enum.Enum):
            return _convert_enum(tp, value, path, problems)
        return _convert_scalar(tp, value, path, problems)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(tp, args, value, path, problems)
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        problems.append((path, f"expected {_type_name(tp)}, got {_shown(value)}"))
        return _FAILED
    if origin in (list, tuple):
        return _convert_sequence(tp, origin, args, value, path, problems)
    if origin in (dict, Mapping):
        return _convert_mapping(tp, args, value, path, problems)
    raise TypeError(f"config loader does not support the annotation {tp!r} (at {path!r})")


def _convert_scalar(tp: type, value: Any, path: str, problems: list[Problem]) -> Any:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and abs(value) > MAX_INT:
            problems.append((path, f"{_shown(value)} is out of range (|value| <= 2**53)"))
            return _FAILED
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            if isinstance(value, int) and abs(value) > MAX_INT:
                problems.append((path, f"{_shown(value)} is out of range (|value| <= 2**53)"))
                return _FAILED
            if not math.isfinite(value):
                problems.append((path, f"expected a finite number, got {value}"))
                return _FAILED
            return float(value)
    else:
        ok = isinstance(value, tp)
    if ok:
        return value
    problems.append((path, f"expected {_type_name(tp)}, got {_shown(value)}"))
    return _FAILED


def _convert_enum(tp: type[enum.Enum], value: Any, path: str, problems: list[Problem]) -> Any:
    if isinstance(value, tp):
        return value
    for member in tp:
        if member.value == value and type(member.value) is type(value):
            return member
    problems.append((path, f"expected {_type_name(tp)}, got {_shown(value)}"))
    return _FAILED


def _convert_union(
    tp: Any, args: tuple[Any, ...], value: Any, path: str, problems: list[Problem]
) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    attempts: list[list[Problem]] = []
    for option in options:
        scratch: list[Problem] = []
        converted = _convert(option, value, path, scratch)
        if converted is not _FAILED:
            problems.extend(scratch)      # semantic problems of a nested dataclass, if any
            return converted
        attempts.append(scratch)
    if len(options) == 1 and any(p != path for p, _ in attempts[0]):
        problems.extend(attempts[0])      # `X | None`, X a container: report inside it
    else:
        problems.append((path, f"expected {_type_name(tp)}, got {_shown(value)}"))
    return _FAILED


def _convert_sequence(
    tp: Any, origin: type, args: tuple[Any, ...], value: Any, path: str,
    problems: list[Problem],
) -> Any:
    if not isinstance(value, (list, tuple)):
        problems.append((path, f"expected {_type_name(tp)}, got {_shown(value)}"))
        return _FAILED
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            problems.append((path, f"expected {len(args)} items, got {len(value)}"))
            return _FAILED
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    items = [_convert(t, v, f"{path}[{i}]", problems)
             for i, (t, v) in enumerate(zip(item_types, value, strict=True))]
    if any(item is _FAILED for item in items):
        return _FAILED
    return tuple(items) if origin is tuple else items


def _convert_mapping(
    tp: Any, args: tuple[Any, ...], value: Any, path: str, problems: list[Problem]
) -> Any:
    if not isinstance(value, Mapping):
        problems.append((path, f"expected {_type_name(tp)}, got {_shown(value)}"))
        return _FAILED
    key_type, value_type = args if args else (Any, Any)
    out: dict[Any, Any] = {}
    failed = False
    for key, item in value.items():
        item_path = _join(path, str(key))
        if key_type is str and not isinstance(key, str):
            problems.append((item_path, f"key must be a string, got {_shown(key)}"))
            failed = True
            continue
        converted = _convert(value_type, item, item_path, problems)
        failed |= converted is _FAILED
        out[key] = converted
    return _FAILED if failed else out


def _convert_dataclass(cls: type, value: Any, path: str, problems: list[Problem]) -> Any:
    if not isinstance(value, Mapping):
        problems.append((path, f"expected a mapping, got {_shown(value)}"))
        return _FAILED
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    failed = False
    for key, item in value.items():
        key_path = _join(path, str(key))
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            # Reported, but the instance is still built (without it) so that its semantic
            # problems are listed in the same error.
            problems.append((key_path, _unknown_key_message(str(key), fields)))
            continue
        converted = _convert(hints[key], item, key_path, problems)
        if converted is _FAILED:
            failed = True
        else:
            kwargs[key] = converted
    for name, field in fields.items():
        required = (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING)
        if required and name not in value:
            problems.append((_join(path, name), "required key missing"))
            failed = True
    if failed:
        return _FAILED
    try:
        instance = cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a __post_init__ that validates
        problems.append((path, str(exc)))
        return _FAILED
    semantic = getattr(instance, "problems", None)
    if callable(semantic):
        for sub_path, message in semantic():
            problems.append((_join(path, sub_path), message))
    return instance


def _unknown_key_message(key: str, fields: Mapping[str, dataclasses.Field[Any]]) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    if fields:
        return f"unknown key (valid keys: {', '.join(fields)})"
    return "unknown key (no keys allowed here)"


def search_path(*folders: str | Path) -> list[Path]:
    """The existing folders among ``folders``, in order, without duplicates: where bare
    config names (a chip, an energy table, a CPU preset) are looked up."""
    out: list[Path] = []
    for folder in map(Path, folders):
        if folder.is_dir() and not any(folder.resolve() == f.resolve() for f in out):
            out.append(folder)
    return out


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name the OS cannot even look up (too long, a NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def resolve_named_file(name_or_path: str | Path, folders: list[Path], kind: str) -> Path:
    """The YAML file of a config given as a path or a bare name (``onyx``, ``xeon-12c``).

    A string that looks like a path (it has a ``/`` or ends in ``.yaml``/``.yml``) is returned
    as is (a missing file is reported when it is read); so is an existing file. A bare name is
    looked up as ``NAME.yaml`` in ``folders``; an unknown one gives a ConfigError naming the
    ``kind`` and listing what is available, with a suggestion.
    """
    text = str(name_or_path)
    path = Path(text)
    if isinstance(name_or_path, Path) or "/" in text or path.suffix in (".yaml", ".yml") \
            or _is_file(path):
        return path
    for folder in folders:
        candidate = folder / f"{text}.yaml"
        if _is_file(candidate):
            return candidate
    names = sorted({f.stem for folder in folders for f in folder.glob("*.yaml")})
    close = difflib.get_close_matches(text, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    available = ", ".join(names) if names else "none found"
    raise ConfigError(format_problems(
        text, [(TOP_LEVEL, f"unknown {kind} ({hint}available: {available})")]))
