"""Vertebral level names and their order along the column (cranial -> caudal)."""

from __future__ import annotations

from enum import StrEnum


class Level(StrEnum):
    """A vertebral level. ``str`` valued so that it serialises as ``"L1"`` etc."""

    C1 = "C1"
    C2 = "C2"
    C3 = "C3"
    C4 = "C4"
    C5 = "C5"
    C6 = "C6"
    C7 = "C7"
    T1 = "T1"
    T2 = "T2"
    T3 = "T3"
    T4 = "T4"
    T5 = "T5"
    T6 = "T6"
    T7 = "T7"
    T8 = "T8"
    T9 = "T9"
    T10 = "T10"
    T11 = "T11"
    T12 = "T12"
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"
    L5 = "L5"
    S1 = "S1"

    @property
    def ordinal(self) -> int:
        """Position along the column: C1 is 0, S1 is 24."""
        return _ORDER[self]

    @property
    def region(self) -> str:
        """``"cervical"``, ``"thoracic"``, ``"lumbar"`` or ``"sacral"``."""
        return {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}[self.value[0]]

    def offset(self, n: int) -> Level | None:
        """The level ``n`` positions caudal (``n > 0``) or cranial (``n < 0``); ``None`` past either end."""
        i = self.ordinal + n
        return LEVELS[i] if 0 <= i < len(LEVELS) else None

    @classmethod
    def parse(cls, text: str) -> Level:
        """Parse ``"l1"``, ``"L1"``, ``" T12 "``; raises ``ValueError`` naming the valid choices."""
        t = text.strip().upper()
        try:
            return cls(t)
        except ValueError:
            raise ValueError(f"unknown vertebral level {text!r}; expected one of C1..C7, T1..T12, L1..L5, S1") from None


LEVELS: tuple[Level, ...] = tuple(Level)
_ORDER: dict[Level, int] = {lv: i for i, lv in enumerate(LEVELS)}

# Thoracolumbar junction, where 003_* favours balloon kyphoplasty ("high stress areas").
THORACOLUMBAR_JUNCTION: frozenset[Level] = frozenset({Level.T11, Level.T12, Level.L1})
