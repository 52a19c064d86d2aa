"""Vendor registry: how each scanner brand names and parameterises the series (single source of truth
for the DICOM writer, the truth summary and the CLI choices).

Names follow common clinical protocols: Siemens ``t2_tse_sag`` / ``t1_tse_sag`` / ``t2_tirm_sag``,
GE ``SAG T2 FSE`` / ``SAG T1 FSE`` / ``SAG STIR``, Philips ``T2W_TSE`` / ``T1W_TSE`` / ``STIR_LONGTR``,
Canon ``T2 FSE SAG`` / ``T1 FSE SAG`` / ``STIR SAG``. Timing parameters are typical 1.5 T / 3 T values so
that an ingest stage can tell T1 (short TR/TE), T2 (long TR/TE) and STIR (inversion time ~150-220 ms)
apart from the physics alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.tools.phantom.spec import Vendor


@dataclass(frozen=True)
class Equipment:
    manufacturer: str
    model: str
    field_strength_t: float
    software_versions: str
    station_name: str
    series_number_step: int  # Philips numbers series 301, 401, ...
    image_type_suffix: tuple[str, ...]


@dataclass(frozen=True)
class SeriesProtocol:
    role: str  # LOCALIZER, T1, T2, STIR, AXIAL_T2
    description: str
    protocol_name: str
    sequence_name: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    repetition_time_ms: float
    echo_time_ms: float
    inversion_time_ms: float | None
    echo_train_length: int
    flip_angle_deg: float
    averages: float
    pixel_bandwidth_hz: float
    series_number: int
    orientation: str  # SAGITTAL, AXIAL, MIXED
    phase_direction: str  # ROW or COL


EQUIPMENT: dict[Vendor, Equipment] = {
    Vendor.SIEMENS: Equipment("SIEMENS", "Aera", 1.5, "syngo MR E11", "PHANTOMMR01", 1, ("M", "NORM", "DIS2D")),
    Vendor.GE: Equipment(
        "GE MEDICAL SYSTEMS",
        "SIGNA Artist",
        1.5,
        "27\\LX\\MR Software release:RX27.0_R02",
        "PHANTOMGE1",
        1,
        ("OTHER",),
    ),
    Vendor.PHILIPS: Equipment(
        "Philips Medical Systems", "Ingenia", 3.0, "5.6.1\\5.6.1.2", "PHANTOM-PMS", 100, ("M", "SE")
    ),
    Vendor.CANON: Equipment("CANON_MEC", "Vantage Orian", 1.5, "V6.0", "PHANTOMCN1", 1, ("OTHER",)),
}

_T = tuple


def _protocols() -> dict[Vendor, dict[str, SeriesProtocol]]:
    s, g, p, c = Vendor.SIEMENS, Vendor.GE, Vendor.PHILIPS, Vendor.CANON

    def sp(
        role: str,
        desc: str,
        prot: str,
        seqname: str,
        ss: tuple,
        sv: tuple,
        so: tuple,
        tr: float,
        te: float,
        ti: float | None,
        etl: int,
        flip: float,
        nex: float,
        bw: float,
        num: int,
        orient: str,
        phase: str = "COL",
    ) -> SeriesProtocol:
        return SeriesProtocol(role, desc, prot, seqname, ss, sv, so, tr, te, ti, etl, flip, nex, bw, num, orient, phase)

    return {
        s: {
            "LOCALIZER": sp(
                "LOCALIZER",
                "localizer",
                "localizer",
                "*fl2d1",
                _T(["GR"]),
                _T(["SP"]),
                _T([]),
                8.6,
                4.0,
                None,
                1,
                20.0,
                1.0,
                320.0,
                1,
                "MIXED",
                "ROW",
            ),
            "T2": sp(
                "T2",
                "t2_tse_sag",
                "t2_tse_sag",
                "*tse2d1_17",
                _T(["SE"]),
                _T(["SK", "SP", "OSP"]),
                _T(["PFP"]),
                3500.0,
                95.0,
                None,
                17,
                150.0,
                2.0,
                250.0,
                2,
                "SAGITTAL",
            ),
            "T1": sp(
                "T1",
                "t1_tse_sag",
                "t1_tse_sag",
                "*tse2d1_3",
                _T(["SE"]),
                _T(["SK", "SP", "OSP"]),
                _T([]),
                550.0,
                10.0,
                None,
                3,
                150.0,
                2.0,
                260.0,
                3,
                "SAGITTAL",
            ),
            "STIR": sp(
                "STIR",
                "t2_tirm_sag",
                "t2_tirm_sag",
                "*tir2d1_13",
                _T(["IR", "SE"]),
                _T(["SK", "SP", "MP", "OSP"]),
                _T(["IR"]),
                4000.0,
                60.0,
                150.0,
                13,
                150.0,
                1.0,
                250.0,
                4,
                "SAGITTAL",
            ),
            "AXIAL_T2": sp(
                "AXIAL_T2",
                "t2_tse_tra",
                "t2_tse_tra",
                "*tse2d1_15",
                _T(["SE"]),
                _T(["SK", "SP", "OSP"]),
                _T([]),
                4200.0,
                98.0,
                None,
                15,
                150.0,
                2.0,
                190.0,
                5,
                "AXIAL",
                "ROW",
            ),
        },
        g: {
            "LOCALIZER": sp(
                "LOCALIZER",
                "3-Plane Loc",
                "3-PLANE LOC",
                "fgre",
                _T(["GR"]),
                _T(["SS", "SK"]),
                _T([]),
                5.0,
                1.6,
                None,
                1,
                30.0,
                1.0,
                244.0,
                1,
                "MIXED",
                "ROW",
            ),
            "T2": sp(
                "T2",
                "SAG T2 FSE",
                "SAG T2 FSE",
                "fse-xl",
                _T(["SE"]),
                _T(["SK", "OSP"]),
                _T(["PFP"]),
                3200.0,
                102.0,
                None,
                20,
                111.0,
                2.0,
                244.0,
                2,
                "SAGITTAL",
            ),
            "T1": sp(
                "T1",
                "SAG T1 FSE",
                "SAG T1 FSE",
                "fse-xl",
                _T(["SE"]),
                _T(["SK", "OSP"]),
                _T([]),
                600.0,
                12.0,
                None,
                4,
                111.0,
                2.0,
                244.0,
                3,
                "SAGITTAL",
            ),
            "STIR": sp(
                "STIR",
                "SAG STIR",
                "SAG STIR",
                "fse-ir",
                _T(["SE", "IR"]),
                _T(["SK", "OSP", "MP"]),
                _T([]),
                4600.0,
                48.0,
                150.0,
                12,
                111.0,
                1.0,
                244.0,
                4,
                "SAGITTAL",
            ),
            "AXIAL_T2": sp(
                "AXIAL_T2",
                "AX T2 FSE",
                "AX T2 FSE",
                "fse-xl",
                _T(["SE"]),
                _T(["SK", "OSP"]),
                _T([]),
                4000.0,
                100.0,
                None,
                18,
                111.0,
                2.0,
                244.0,
                5,
                "AXIAL",
                "ROW",
            ),
        },
        p: {
            "LOCALIZER": sp(
                "LOCALIZER",
                "Survey",
                "Survey",
                "FFE",
                _T(["GR"]),
                _T(["SP"]),
                _T([]),
                11.0,
                4.6,
                None,
                1,
                15.0,
                1.0,
                300.0,
                1,
                "MIXED",
                "ROW",
            ),
            "T2": sp(
                "T2",
                "T2W_TSE",
                "T2W_TSE",
                "TSE",
                _T(["SE"]),
                _T(["SK"]),
                _T(["PFP"]),
                3000.0,
                100.0,
                None,
                18,
                90.0,
                2.0,
                230.0,
                3,
                "SAGITTAL",
            ),
            "T1": sp(
                "T1",
                "T1W_TSE",
                "T1W_TSE",
                "TSE",
                _T(["SE"]),
                _T(["SK"]),
                _T([]),
                650.0,
                8.0,
                None,
                5,
                90.0,
                2.0,
                230.0,
                4,
                "SAGITTAL",
            ),
            "STIR": sp(
                "STIR",
                "STIR_LONGTR",
                "STIR_LONGTR",
                "IR-TSE",
                _T(["IR", "SE"]),
                _T(["SK", "MP"]),
                _T([]),
                4500.0,
                60.0,
                210.0,
                15,
                90.0,
                1.0,
                230.0,
                5,
                "SAGITTAL",
            ),
            "AXIAL_T2": sp(
                "AXIAL_T2",
                "T2W_TSE_TRA",
                "T2W_TSE_TRA",
                "TSE",
                _T(["SE"]),
                _T(["SK"]),
                _T([]),
                3500.0,
                100.0,
                None,
                16,
                90.0,
                2.0,
                230.0,
                6,
                "AXIAL",
                "ROW",
            ),
        },
        c: {
            "LOCALIZER": sp(
                "LOCALIZER",
                "LOCATOR",
                "LOCATOR",
                "FE2D",
                _T(["GR"]),
                _T(["SP"]),
                _T([]),
                7.0,
                3.0,
                None,
                1,
                20.0,
                1.0,
                260.0,
                1,
                "MIXED",
                "ROW",
            ),
            "T2": sp(
                "T2",
                "T2 FSE SAG",
                "T2 FSE SAG",
                "FSE2D",
                _T(["SE"]),
                _T(["SK", "SP"]),
                _T(["PFP"]),
                3600.0,
                96.0,
                None,
                17,
                90.0,
                2.0,
                244.0,
                2,
                "SAGITTAL",
            ),
            "T1": sp(
                "T1",
                "T1 FSE SAG",
                "T1 FSE SAG",
                "FSE2D",
                _T(["SE"]),
                _T(["SK", "SP"]),
                _T([]),
                580.0,
                11.0,
                None,
                3,
                90.0,
                2.0,
                244.0,
                3,
                "SAGITTAL",
            ),
            "STIR": sp(
                "STIR",
                "STIR SAG",
                "STIR SAG",
                "FSE2D",
                _T(["IR", "SE"]),
                _T(["SK", "SP", "MP"]),
                _T([]),
                4800.0,
                55.0,
                160.0,
                13,
                90.0,
                1.0,
                244.0,
                4,
                "SAGITTAL",
            ),
            "AXIAL_T2": sp(
                "AXIAL_T2",
                "T2 FSE AX",
                "T2 FSE AX",
                "FSE2D",
                _T(["SE"]),
                _T(["SK", "SP"]),
                _T([]),
                4200.0,
                100.0,
                None,
                17,
                90.0,
                2.0,
                244.0,
                5,
                "AXIAL",
                "ROW",
            ),
        },
    }


PROTOCOLS = _protocols()


def protocol_for(vendor: Vendor, role: str) -> SeriesProtocol:
    """The series protocol of ``role`` for ``vendor`` (series numbers scaled Philips-style where relevant)."""
    proto = PROTOCOLS[Vendor(vendor)][role]
    step = EQUIPMENT[Vendor(vendor)].series_number_step
    if step != 1:
        from dataclasses import replace

        proto = replace(proto, series_number=proto.series_number * step + 1)
    return proto
