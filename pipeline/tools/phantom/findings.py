"""What can be abnormal at one level: a fracture (with oedema and retropulsion), a slip, a Modic change, a
Schmorl node. Each spec is frozen and validated on construction; :func:`parse_fracture` turns the command-line
syntax ``LEVEL:KIND:LOSS[:edema=PATTERN[:FRACTION]][:retro=MM]`` into a :class:`FractureSpec`. The phantom as a
whole is :class:`pipeline.tools.phantom.spec.PhantomSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from pipeline.errors import ConfigError
from pipeline.levels import Level
from pipeline.model import EdemaPattern, Morphology

#: Largest height loss the generator can build (a vertebra plana keeps ~15 % of its height).
MAX_HEIGHT_LOSS_PCT = 85.0
#: Largest posterior-wall retropulsion (mm) into the canal.
MAX_RETROPULSION_MM = 8.0
#: Default oedema fraction used when ``edema=True`` but no fraction is given, per pattern.
DEFAULT_EDEMA_FRACTION = {EdemaPattern.BAND: 0.30, EdemaPattern.DIFFUSE: 0.60}
_FRACTURABLE = tuple(lv for lv in Level if lv.region in ("thoracic", "lumbar")) + (Level.S1,)


@dataclass(frozen=True)
class FractureSpec:
    """One abnormal vertebral body.

    Parameters
    ----------
    level : Level
        Which body (T1..L5 or S1).
    kind : Morphology
        ``WEDGE`` (anterior height loss), ``BICONCAVE`` (middle loss, both endplates concave) or
        ``CRUSH`` (uniform loss of the whole body). ``NORMAL`` with ``height_loss_pct=0`` gives a body
        of normal shape, e.g. to carry marrow oedema without collapse (bone bruise, infiltration).
    height_loss_pct : float
        ``100 * (1 - min(Ha, Hm, Hp) / reference_height)``, 0..85 (see :mod:`pipeline.tools.phantom.truth`).
        Reproduced exactly by the geometry (solved numerically).
    edema : bool
        Marrow oedema present (acute/subacute fracture); ``False`` for a chronic fracture.
    edema_pattern : EdemaPattern
        ``BAND`` (subchondral band under the fractured endplate(s)) or ``DIFFUSE`` (patchy, whole body).
    edema_fraction : float
        Share of the body's volume (cortex included) that is oedematous, 0..1. ``0`` with ``edema=True``
        means "use the pattern's default" (:data:`DEFAULT_EDEMA_FRACTION`).
    retropulsion_mm : float
        Posterior bulge of the posterior wall into the spinal canal (mid-sagittal, mm), 0..8.
    """

    level: Level
    kind: Morphology
    height_loss_pct: float
    edema: bool = False
    edema_pattern: EdemaPattern = EdemaPattern.BAND
    edema_fraction: float = 0.0
    retropulsion_mm: float = 0.0

    def __post_init__(self) -> None:
        level = parse_level(self.level, "fracture level")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "kind", parse_enum(Morphology, self.kind, f"fracture at {level.value}: kind"))
        object.__setattr__(
            self,
            "edema_pattern",
            parse_enum(EdemaPattern, self.edema_pattern, f"fracture at {level.value}: edema_pattern"),
        )
        object.__setattr__(self, "height_loss_pct", float(self.height_loss_pct))
        object.__setattr__(self, "edema_fraction", float(self.edema_fraction))
        object.__setattr__(self, "retropulsion_mm", float(self.retropulsion_mm))
        where = f"fracture at {level.value}"
        if level not in _FRACTURABLE:
            raise ConfigError(f"{where}: only thoracic, lumbar and S1 bodies can be fractured")
        if self.kind not in (Morphology.WEDGE, Morphology.BICONCAVE, Morphology.CRUSH, Morphology.NORMAL):
            raise ConfigError(f"{where}: kind must be wedge, biconcave, crush or normal, got {self.kind.value}")
        if not 0.0 <= self.height_loss_pct <= MAX_HEIGHT_LOSS_PCT:
            raise ConfigError(
                f"{where}: height_loss_pct must be in 0..{MAX_HEIGHT_LOSS_PCT:g}, got {self.height_loss_pct:g}"
            )
        if self.kind is Morphology.NORMAL and self.height_loss_pct != 0.0:
            raise ConfigError(f"{where}: kind 'normal' means no collapse; use height_loss_pct=0 or a fracture kind")
        if self.kind is not Morphology.NORMAL and self.height_loss_pct < 10.0:
            raise ConfigError(
                f"{where}: a {self.kind.value} fracture needs height_loss_pct >= 10 (below that the shape is "
                f"within physiological variation); use kind 'normal' with 0 for oedema without collapse"
            )
        if self.edema_pattern not in (EdemaPattern.BAND, EdemaPattern.DIFFUSE):
            raise ConfigError(f"{where}: edema_pattern must be band or diffuse, got {self.edema_pattern.value}")
        if not 0.0 <= self.edema_fraction <= 0.8:
            raise ConfigError(
                f"{where}: edema_fraction must be in 0..0.8 (the cortex is never oedematous), "
                f"got {self.edema_fraction:g}"
            )
        if not self.edema and self.edema_fraction > 0:
            raise ConfigError(f"{where}: edema_fraction={self.edema_fraction:g} given but edema=False")
        if self.edema and self.edema_fraction == 0.0:
            object.__setattr__(self, "edema_fraction", DEFAULT_EDEMA_FRACTION[self.edema_pattern])
        if not 0.0 <= self.retropulsion_mm <= MAX_RETROPULSION_MM:
            raise ConfigError(
                f"{where}: retropulsion_mm must be in 0..{MAX_RETROPULSION_MM:g}, got {self.retropulsion_mm:g}"
            )
        if self.kind is Morphology.NORMAL and not self.edema and self.retropulsion_mm == 0:
            raise ConfigError(f"{where}: a 'normal' entry without oedema or retropulsion changes nothing; remove it")

    @property
    def acute(self) -> bool:
        """Oedema present (an acute or subacute fracture / marrow lesion)."""
        return self.edema


#: Largest anterior slip (spondylolisthesis) the generator builds, mm (about Meyerding grade II).
MAX_SLIP_MM = 16.0
_SLIPPABLE = tuple(lv for lv in Level if lv.region in ("thoracic", "lumbar"))


@dataclass(frozen=True)
class SlipSpec:
    """Spondylolisthesis: anterior translation of one body (and the column above it) over the body below.

    Parameters
    ----------
    level : Level
        The slipping body (T1..L5), e.g. ``L4`` for an L4-on-L5 slip, ``L5`` for L5 on S1.
    slip_mm : float
        Translation (mm) along the superior endplate rim line of the body below, anterior positive, 0.5..16.
        The posterior-inferior corner of ``level`` then lies ``slip_mm`` in front of the posterior-superior
        corner of the body below (they are flush without a slip). Meyerding grade in the truth:
        ``slip_mm / depth of the body below`` in quarters (I < 25 %, II 25-50 %).
    """

    level: Level
    slip_mm: float

    def __post_init__(self) -> None:
        level = parse_level(self.level, "slip level")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "slip_mm", float(self.slip_mm))
        if level not in _SLIPPABLE:
            raise ConfigError(f"slip at {level.value}: only thoracic and lumbar bodies can slip (T1..L5)")
        if not 0.5 <= self.slip_mm <= MAX_SLIP_MM:
            raise ConfigError(f"slip at {level.value}: slip_mm must be in 0.5..{MAX_SLIP_MM:g}, got {self.slip_mm:g}")


@dataclass(frozen=True)
class ModicSpec:
    """Modic change at both endplates of one disc (marrow bands in the two adjacent bodies).

    Parameters
    ----------
    level : Level
        The disc, named by the body above it (T1..L5; ``L4`` = L4/L5: the inferior endplate of L4 and the
        superior endplate of L5).
    modic_type : int
        1: fibrovascular (T1 dark, T2 and STIR bright: looks like oedema but is *not* marked as oedema in the
        truth); 2: fatty (T1 bright, T2 bright, STIR dark).
    depth_mm : float
        Typical band depth from the endplate into the marrow, 2..12 (irregular, varies per body).
    """

    level: Level
    modic_type: int
    depth_mm: float = 6.0

    def __post_init__(self) -> None:
        level = parse_level(self.level, "Modic level")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "depth_mm", float(self.depth_mm))
        if level not in _SLIPPABLE:
            raise ConfigError(f"Modic at {level.value}: name the disc by the body above it, T1..L5")
        if self.modic_type not in (1, 2) or isinstance(self.modic_type, bool):
            raise ConfigError(f"Modic at {level.value}: modic_type must be 1 or 2, got {self.modic_type!r}")
        if not 2.0 <= self.depth_mm <= 12.0:
            raise ConfigError(f"Modic at {level.value}: depth_mm must be in 2..12, got {self.depth_mm:g}")


@dataclass(frozen=True)
class SchmorlSpec:
    """Schmorl node: a small pit in one endplate filled with disc material (never part of the body label).

    Parameters
    ----------
    level : Level
        The body (T1..L5 or S1; S1 only on its superior endplate).
    endplate : str
        ``"superior"`` or ``"inferior"``.
    radius_mm, depth_mm : float
        Half-width of the pit (1.5..5 mm) and its depth into the body from the endplate surface (1.5..8 mm).
    ap_fraction : float
        Centre of the pit as a fraction of the depth from the anterior cortex, 0.25..0.75; the pit must stay
        clear of the 10/50/90 % height lines (checked when the phantom is built) so heights stay exact.
    lateral_mm : float
        Offset of the centre towards the patient's left (negative: right) from the body's mid-plane.
    """

    level: Level
    endplate: str = "superior"
    radius_mm: float = 3.0
    depth_mm: float = 4.0
    ap_fraction: float = 0.3
    lateral_mm: float = 0.0

    def __post_init__(self) -> None:
        level = parse_level(self.level, "Schmorl node level")
        object.__setattr__(self, "level", level)
        for name in ("radius_mm", "depth_mm", "ap_fraction", "lateral_mm"):
            object.__setattr__(self, name, float(getattr(self, name)))
        where = f"Schmorl node at {level.value}"
        if level not in _FRACTURABLE:
            raise ConfigError(f"{where}: only thoracic, lumbar and S1 bodies")
        if self.endplate not in ("superior", "inferior"):
            raise ConfigError(f"{where}: endplate must be 'superior' or 'inferior', got {self.endplate!r}")
        if level is Level.S1 and self.endplate == "inferior":
            raise ConfigError(f"{where}: S1's inferior end is fused to S2; use its superior endplate")
        if not 1.5 <= self.radius_mm <= 5.0 or not 1.5 <= self.depth_mm <= 8.0:
            raise ConfigError(f"{where}: radius_mm must be 1.5..5 and depth_mm 1.5..8")
        if not 0.25 <= self.ap_fraction <= 0.75 or abs(self.lateral_mm) > 15.0:
            raise ConfigError(f"{where}: ap_fraction must be 0.25..0.75 and |lateral_mm| <= 15")


_KINDS = {
    "wedge": Morphology.WEDGE,
    "biconcave": Morphology.BICONCAVE,
    "crush": Morphology.CRUSH,
    "normal": Morphology.NORMAL,
    "none": Morphology.NORMAL,
}
FRACTURE_SYNTAX = (
    "LEVEL:KIND:LOSS[:edema=band|diffuse[:FRACTION]][:retro=MM], e.g. L1:wedge:35:edema=band:0.4, "
    "T12:crush:72:retro=3, L3:biconcave:30:edema=diffuse, L2:normal:0:edema=diffuse:0.5 "
    "(KIND is wedge, biconcave, crush or normal; LOSS is the height loss in percent; "
    "FRACTION is the oedematous share of the body, 0-0.8)"
)


def parse_fracture(text: str) -> FractureSpec:
    """Parse the command-line fracture syntax (see :data:`FRACTURE_SYNTAX`).

    Raises
    ------
    ConfigError
        With the offending text, what is wrong and the expected syntax.
    """

    def fail(why: str) -> ConfigError:
        return ConfigError(f"--fracture {text!r}: {why}. Expected {FRACTURE_SYNTAX}")

    parts = [p.strip() for p in text.strip().split(":")]
    if len(parts) < 3 or not all(parts):
        raise fail("need at least LEVEL:KIND:LOSS")
    try:
        level = Level.parse(parts[0])
    except ValueError as exc:
        raise fail(str(exc)) from None
    kind = _KINDS.get(parts[1].lower())
    if kind is None:
        raise fail(f"unknown kind {parts[1]!r}")
    try:
        loss = float(parts[2].rstrip("%"))
    except ValueError:
        raise fail(f"height loss {parts[2]!r} is not a number") from None
    edema = False
    pattern = EdemaPattern.BAND
    fraction = 0.0
    retro = 0.0
    i = 3
    while i < len(parts):
        key, sep, value = parts[i].partition("=")
        key = key.lower()
        if key in ("edema", "oedema"):
            if not sep or value.lower() not in ("band", "diffuse", "none"):
                raise fail(f"{parts[i]!r}: edema must be band, diffuse or none")
            edema = value.lower() != "none"
            if edema:
                pattern = EdemaPattern(value.lower())
            if i + 1 < len(parts) and "=" not in parts[i + 1]:
                try:
                    fraction = float(parts[i + 1])
                except ValueError:
                    raise fail(f"oedema fraction {parts[i + 1]!r} is not a number") from None
                i += 1
        elif key in ("fraction", "frac"):
            try:
                fraction = float(value)
            except ValueError:
                raise fail(f"oedema fraction {value!r} is not a number") from None
        elif key in ("retro", "retropulsion"):
            try:
                retro = float(value)
            except ValueError:
                raise fail(f"retropulsion {value!r} is not a number (mm)") from None
        else:
            raise fail(f"unknown option {parts[i]!r}")
        i += 1
    try:
        return FractureSpec(
            level,
            kind,
            loss,
            edema=edema,
            edema_pattern=pattern,
            edema_fraction=fraction,
            retropulsion_mm=retro,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None


def parse_level(value: object, what: str) -> Level:
    """``value`` (a Level or its name) as a Level; a ConfigError naming ``what`` otherwise."""
    if isinstance(value, Level):
        return value
    try:
        return Level.parse(str(value))
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


E = TypeVar("E", bound=Enum)


def parse_enum(cls: type[E], value: object, what: str) -> E:
    """``value`` as a member of ``cls``; a ConfigError naming ``what`` and the allowed values otherwise."""
    try:
        return cls(value)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(str(m.value) for m in cls)}") from None
