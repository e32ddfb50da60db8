"""The progress interface the simulator reports through (the display lives in reports).

A long run announces its stages and, when it knows it, each stage's total up front; then it
advances. Anything the CLI (or a notebook) passes as ``progress=`` is turned into this shape by
:func:`progress_of`: None becomes a no-op, a plain callable receives the labels (the older
``progress(label_or_cycle)`` form), and an object with ``stage``/``advance`` is used as is
(reports.progress.ProgressDisplay is one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["NoProgress", "Progress", "progress_of"]


@runtime_checkable
class Progress(Protocol):
    """Where a run reports how far it is."""

    def stage(self, name: str, total: int | None = None, unit: str = "") -> None:
        """A new stage begins (``total`` items of ``unit`` when known up front)."""

    def advance(self, n: int = 1, label: str = "") -> None:
        """``n`` more items of the current stage are done; ``label`` names the last one."""

    def __call__(self, where: int | str) -> None:
        """A position inside the current item: a cycle (int) or a label."""


class NoProgress:
    """The progress of a run nobody watches: every call does nothing."""

    def stage(self, name: str, total: int | None = None, unit: str = "") -> None:
        return None

    def advance(self, n: int = 1, label: str = "") -> None:
        return None

    def __call__(self, where: int | str) -> None:
        return None


class _Labels:
    """A plain ``callback(label_or_cycle)`` seen as a Progress: it gets every label."""

    def __init__(self, callback: Callable[[Any], None]) -> None:
        self.callback = callback

    def stage(self, name: str, total: int | None = None, unit: str = "") -> None:
        self.callback(name if total is None else f"{name} ({total:,} {unit})".strip())

    def advance(self, n: int = 1, label: str = "") -> None:
        if label:
            self.callback(label)

    def __call__(self, where: int | str) -> None:
        self.callback(where)


def progress_of(obj: Any) -> Progress:
    """``obj`` as a Progress: None -> NoProgress, a Progress as is, a callable -> labels."""
    if obj is None:
        return NoProgress()
    if isinstance(obj, Progress):
        return obj
    if callable(obj):
        return _Labels(obj)
    raise TypeError(f"progress must be None, a callable or a Progress, got {type(obj).__name__}")
