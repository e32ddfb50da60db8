"""No file of the repository cites the team's notes outside it (tests/citations.py
PRIVATE_NOTE): a user of the checkout or the installed package must be able to follow every
citation, so configs, code comments, docstrings and docs cite public sources."""

from __future__ import annotations

from pathlib import Path

from tests import citations

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".toml", ".txt", ".cfg", ".ini", ".json", ".html"}
SKIP_DIRS = {"runs", "build", "dist", "node_modules", "__pycache__"}


def repository_text_files() -> list[Path]:
    """The repository's source, config and documentation files: hidden folders (.git, .venv,
    caches), run outputs and build products excluded."""
    out: list[Path] = []
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(p.startswith(".") or p in SKIP_DIRS or p.endswith(".egg-info")
               for p in rel.parts[:-1]):
            continue
        if path.is_file() and (path.suffix in SUFFIXES or path.name == "Makefile"):
            out.append(path)
    return out


def test_checker_catches_each_kind_of_private_citation() -> None:
    md = ".md"
    lines = [
        "# source: energy_cpu" + md + " section 3",          # 1: caught
        "see peers" + md + " 1.5 and onyx_sam" + md,          # 2: caught
        "DESIGN" + md + "'s import rules",                    # 3: caught
        "STYLE" + md,                                         # 4: caught
        "(workloads" + md + " section 2)",                    # 5: caught
        "/work/" + "shared/x" + md,                           # 6: caught
        "shared/" + "reference/workloads" + md,               # 7: caught
        "docs/workloads" + md + " lists the catalog",         # 8: fine, in the repository
        "[workloads" + md + "](workloads" + md + ")",          # 9: fine, a relative docs link
        "shared/routed experts; docs/energy" + md,            # 10: fine
        "Koul et al., VLSI 2024, Fig. 8",                     # 11: fine
    ]
    assert [n for n, _ in citations.private_note_citations("\n".join(lines))] == [
        1, 2, 3, 4, 5, 6, 7]


def test_no_repository_file_cites_a_note_outside_the_repository() -> None:
    files = repository_text_files()
    # the walk did see the configs, the code and the docs
    names = {p.relative_to(ROOT).as_posix() for p in files}
    assert {"README.md", "configs/energy/onyx-12nm.yaml", "configs/cpus/xeon-12c.yaml",
            "docs/energy.md", "workloads/routing.py", "tests/citations.py"} <= names
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
             for p in files
             for n, line in citations.private_note_citations(p.read_text(errors="replace"))]
    assert found == []
