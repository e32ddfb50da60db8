"""Stream tokens of the Sparse Abstract Machine (SAM, ASPLOS 2023, section 3).

A stream is a sequence of tokens. Data tokens are plain Python numbers (coordinates and
references are ints, values are ints or floats). Control tokens are typed objects whose repr
is the paper notation:

- ``Stop(n)``  ``Sn``: ends the current fiber and n enclosing fibers;
- ``DONE``     ``D``: ends the stream;
- ``EMPTY``    ``N``: an absent operand on ref/val streams after a union; ALUs read it as 0;
- ``REP``      ``R``: one repetition on a repeat-signal stream.

Compare with ``isinstance`` (or identity for the singletons), never with strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from isa.errors import IsaError


@dataclass(frozen=True, slots=True)
class Stop:
    """Hierarchical stop token S_n."""

    level: int

    def __repr__(self) -> str:
        return f"S{self.level}"


@dataclass(frozen=True, slots=True)
class Done:
    """End of stream."""

    def __repr__(self) -> str:
        return "D"


@dataclass(frozen=True, slots=True)
class Empty:
    """The empty (absent) token N produced by unioners on ref and val streams."""

    def __repr__(self) -> str:
        return "N"


@dataclass(frozen=True, slots=True)
class Rep:
    """One repeat signal R on a repsig stream."""

    def __repr__(self) -> str:
        return "R"


DONE = Done()
EMPTY = Empty()
REP = Rep()

Token = int | float | Stop | Done | Empty | Rep


def is_data(tok: object) -> bool:
    """True for a number (coordinate, reference or value); False for control tokens."""
    return isinstance(tok, (int, float)) and not isinstance(tok, bool)


def tokens(text: str) -> list[Token]:
    """Parse paper notation, e.g. ``tokens("0 2 S0 5 S1 D")``; arrival order left to right."""
    out: list[Token] = []
    for word in text.replace(",", " ").split():
        if word == "D":
            out.append(DONE)
        elif word == "N":
            out.append(EMPTY)
        elif word == "R":
            out.append(REP)
        elif word[0] == "S" and word[1:].isdigit():
            out.append(Stop(int(word[1:])))
        else:
            try:
                out.append(int(word))
            except ValueError:
                try:
                    out.append(float(word))
                except ValueError:
                    raise IsaError(f"bad token {word!r} in stream {text!r}") from None
    return out


def format_tokens(stream: list[Token]) -> str:
    """Print a stream in paper notation (inverse of `tokens` for ints and control tokens)."""
    return " ".join(repr(t) if not is_data(t) else str(t) for t in stream)
