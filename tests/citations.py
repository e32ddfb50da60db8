"""The citation rule shared by the config tests: every number in a YAML config file has a
source or says ASSUMPTION, on its line or in the block of comment lines directly above it."""

from __future__ import annotations

import re

import yaml

LEAF = re.compile(r"^\s*(?:-\s+)?(?:[\w.-]+\s*:)?\s*(?P<value>.*?)\s*$")


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of one YAML line: the first '#' outside quotes starts a comment."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1:]
    return line, ""


def numeric_leaves(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, line, comments) of every numeric leaf: its own comment and the block of
    comment lines directly above it."""
    lines = text.splitlines()
    out: list[tuple[int, str, list[str]]] = []
    for i, line in enumerate(lines):
        code, comment = split_comment(line)
        match = LEAF.match(code)
        if not code.strip() or match is None or not match["value"]:
            continue
        try:
            value = yaml.safe_load(match["value"])
        except yaml.YAMLError:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        comments = [comment]
        j = i - 1
        while j >= 0 and lines[j].lstrip().startswith("#"):
            comments.append(lines[j])
            j -= 1
        out.append((i + 1, line, comments))
    return out


def uncited_numbers(text: str, source: re.Pattern[str]) -> list[tuple[int, str]]:
    """(line number, line) of every numeric leaf with no ``source`` match in its comment or
    in the comment lines directly above it."""
    return [(n, line) for n, line, comments in numeric_leaves(text)
            if not any(source.search(c) for c in comments)]


PRIVATE_NOTE = re.compile(
    r"\b(energy_cpu|peers|onyx_sam|DESIGN|STYLE)\.md\b"
    r"|(?<![\w/\[])(?<!\]\()workloads\.md\b"
    r"|\bshared/(reference|hooks|DESIGN|STYLE)\b|/work/share[d]\b")
"""A citation of the team's research or design notes, which are not in the repository (so a
reader of the code or the installed package cannot follow it): the energy_cpu, peers,
onyx_sam, DESIGN and STYLE notes, anything under the team's shared folder, and a bare
workloads note (docs/workloads.md and a relative markdown link to it are the repository's
own). Cite the note's primary public source instead: a paper by title, a datasheet, a
repository file, a URL."""


def private_note_citations(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line of ``text`` that cites a note outside the repository."""
    return [(n, line) for n, line in enumerate(text.splitlines(), 1)
            if PRIVATE_NOTE.search(line)]
