"""Reading YAML a user hands us (chip configs, energy tables, CPU presets, workload specs).

Two guards that ``yaml.safe_load`` alone lacks:

- the file: only a regular file of at most ``MAX_YAML_BYTES`` of UTF-8 text is read (so
  ``/dev/zero``, a folder, a binary or a huge file is refused before it is parsed);
- the document: a key given twice in one mapping is an error (``safe_load`` keeps the last
  silently), nesting is limited to ``MAX_DEPTH`` levels (deeper input would exhaust Python's
  recursion), and an integer has at most ``MAX_INT_DIGITS`` digits (Python refuses to convert
  very long ones, and no config value needs them).

Every refusal is a :class:`yaml.YAMLError` with a line and column where one applies, or an
:class:`UnreadableText` naming the problem with the file; callers turn both into their own
error type (ConfigError, WorkloadError) with the file's name.

A file is parsed once per process and version (:func:`load_yaml_file`: keyed by its resolved
path, inode, size and modification time, so an edited file is read again); every caller gets
its own copy of the document, so none can change what the next one reads.
"""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "MAX_YAML_BYTES", "UnreadableText", "file_version",
           "load_yaml_file", "load_yaml_text", "read_text_file"]

MAX_YAML_BYTES = 1 << 20
"""Largest YAML file read (the chip configs are about 5 KB)."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (the chip config nests 3 levels)."""

MAX_INT_DIGITS = 40
"""Most digits of a YAML integer (2**53, the loader's largest int, has 16)."""

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class UnreadableText(Exception):
    """A file that cannot be read as text (missing, not a regular file, too large, binary)."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys, deep nesting and huge integers."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)   # type: ignore[misc]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:          # unhashable: the base class reports it
                    continue
                if first is not None:
                    raise ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first given on line {first.line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)  # type: ignore[arg-type]

    def construct_yaml_int(self, node: ScalarNode) -> int:  # type: ignore[override]
        text = str(self.construct_scalar(node))
        if sum(ch.isalnum() for ch in text) > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"integer with more than {MAX_INT_DIGITS} "
                                   "digits", node.start_mark)
        return super().construct_yaml_int(node)  # type: ignore[no-any-return]


_StrictLoader.add_constructor(_INT_TAG, _StrictLoader.construct_yaml_int)


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document with the strict loader (module docstring).

    Raises: yaml.YAMLError (with a mark where one applies) for any syntax or strictness
    problem.
    """
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_text_file(path: str | Path, max_bytes: int = MAX_YAML_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes.

    Raises: UnreadableText saying why (no such file, a folder or device, too large, binary,
    not UTF-8, an OS error).
    """
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        raise UnreadableText("file not found") from None
    except OSError as exc:
        raise UnreadableText(f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableText("is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableText("not a regular file (a device, pipe or socket)")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UnreadableText(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise UnreadableText(f"larger than {max_bytes:,} bytes: not a config or spec file")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise UnreadableText(f"binary data (a NUL byte at offset {nul}), not YAML text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableText(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                             f"{exc.start})") from None


_CACHE_FILES = 64
"""Most parsed files kept (the oldest is dropped first): a run reads a handful."""

FileVersion = tuple[str, int, int, int, int]
"""(resolved path, device, inode, size, modification time in ns) of a file."""
_parsed: dict[FileVersion, Any] = {}


def file_version(path: Path) -> FileVersion | None:
    """The :data:`FileVersion` of a regular file; None for anything else or an error (the
    reader then reports the problem)."""
    try:
        info = path.stat()
        name = str(path.resolve())
    except (OSError, RuntimeError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return (name, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _copy(doc: Any) -> Any:
    """A copy of a parsed document that shares no mutable object with ``doc`` (mappings and
    lists copied level by level; scalars are immutable; anything else deep-copied)."""
    if isinstance(doc, dict):
        return {k: _copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_copy(v) for v in doc]
    if doc is None or isinstance(doc, (str, int, float, bool)):
        return doc
    return copy.deepcopy(doc)


def load_yaml_file(path: str | Path) -> Any:
    """:func:`load_yaml_text` of :func:`read_text_file` ``(path)``, parsed once per process and
    version of the file (the key is its resolved path, inode, size and modification time, so
    a changed file is parsed again); each call returns its own copy of the document.

    Raises: UnreadableText or yaml.YAMLError as the two functions do (failures are not kept).
    """
    p = Path(path)
    key = file_version(p)
    if key is not None and key in _parsed:
        return _copy(_parsed[key])
    doc = load_yaml_text(read_text_file(p))
    if key is not None and file_version(p) == key:      # unchanged while it was read
        if len(_parsed) >= _CACHE_FILES:
            del _parsed[next(iter(_parsed))]
        _parsed[key] = _copy(doc)
    return doc
