"""Height-loss morphometry of vertebral bodies on sagittal MRI.

For each labelled vertebral body: anterior / middle / posterior heights (Ha, Hm, Hp) on its mid-sagittal
section, the expected height from normal neighbours, height loss %, Genant semi-quantitative grade,
morphology (wedge / biconcave / crush), wedge angle, posterior-wall bulge and canal compromise, and the
six landmarks in LPS mm for overlays.

Method (per body)
-----------------
1. **Section.** The mid-sagittal section is the slice nearest the body's left-right centre (area-weighted over
   its larger sections) within ``slice_search_mm`` of ``mid_slice``; slices within ``neighbour_slice_mm`` are
   measured too (their spread of height loss is reported, lowers the confidence and, beyond
   ``spread_not_assessable_pct``, makes the body not assessable). Heights may be averaged over the slices
   within ``height_slab_mm`` (0: the mid section only).
2. **Contour.** The largest connected part of the body (holes filled) is traced at the 0.5 iso-level of the
   mask (sub-pixel, in mm with the anisotropic in-plane spacing), optionally after a Gaussian of
   ``contour_smoothing_mm``.
3. **Body frame.** The height axis starts as the side of the minimum-area bounding rectangle nearest the
   local direction of the column (from the neighbouring bodies' centroids, so a body tilted 45 degrees at
   L5 is not read sideways). The AP axis ``u`` is then turned (damped iteration) onto the mean direction of
   the superior and inferior endplates (lines through their outer profiles on the central part of the
   depth); ``v`` is perpendicular to it.
4. **Walls.** The anterior and posterior walls are lines through the inner envelope of the outer edge on the
   central part of each wall's own height (points bulging outwards - retropulsion, osteophytes - are
   trimmed). Where both are traced over enough height and run parallel, the chords follow their lean, so a
   sheared section or a wedge (whose endplates' mean direction is tilted by half the wedge angle) is measured
   along its walls.
5. **Heights.** Ha, Hm and Hp are the lengths of the chords parallel to the walls at ``height_inset_fraction``
   of the AP depth ``D`` inside the anterior wall, at mid-depth and inside the posterior wall, outer edge to
   outer edge, each averaged over ``+-height_band_fraction * D``. Their end points are the six landmarks.
   Wedge angle: angle between the superior line (anterior and posterior superior landmarks) and the inferior
   line; positive when the body is lower anteriorly.
6. **Reference height.** Every body starts as a reference body; the most deviant one leaves the set while any
   has Hp below ``crush_ratio_max`` of its prediction or, when its own ratios are normal, its lowest height below
   the grade-1 limit (a wedge or biconcave body keeps its posterior wall, so its Hp stays a reference for its
   neighbours). Each body's posterior height is predicted by interpolating between the nearest reference bodies
   above and below or, on one side only, from the nearest one scaled by the level-to-level trend of the
   reference bodies on that side (bounded by ``max_growth_per_level_pct`` and never above that body's own
   height, since bodies shrink cranially from L3 and L4-L5 are lower than L3). The reference is the
   prediction, or the body's own posterior height where that is taller (an intact posterior wall shows how tall
   the body was; ``reference_at_least_own_hp``). A body of normal shape with a one-sided prediction is graded
   against its own Hp unless that Hp shows a crush (below ``crush_ratio_max`` of the prediction): the bodies at
   the ends of the column (L5 is lower posteriorly than L4) do not follow their neighbours' trend. Without a
   reference body within ``max_reference_gap_levels`` the body's own Hp is the reference (uniform collapse
   cannot then be seen).
7. **Grade and shape.** Height loss % = ``100 * (1 - min(Ha, Hm, Hp) / reference)`` (0 when not smaller);
   Genant grade from the configured cut-offs; morphology is the pattern whose ratio (Ha/Hp wedge, Hm/Hp
   biconcave, Hp/predicted crush) lies lowest relative to its threshold, when it is below that threshold or
   the body is graded; otherwise normal.
8. **Posterior wall.** The posterior edge between the endplates (``wall_corner_inset_fraction`` of Hp inside
   each) is compared with the unbroken wall, the line along the walls' direction through the more anterior
   of its two ends: the largest displacement into the canal is the bulge (mm). The expected sagittal canal
   diameter is measured on the fluid-sensitive ``canal_image`` behind the reference bodies of normal shape,
   from the posterior wall through the CSF (cord, roots and epidural fat tolerated) to the first dark structure
   (ligamentum flavum, lamina), and interpolated to the level; canal compromise = ``100 * bulge / expected``.

9. **Plausibility of the mask** (``reliability.py``; a wrong segmentation must not give a confident false
   grade). Not assessable: a body whose mask reaches the first/last row or column on any slice (cut by the
   field of view); whose tallest height reaches ``max_height_to_spacing_ratio`` of the mean distance from its
   centre to its labelled neighbours' centres (no room for a disc: leak or merged bodies); whose superior and
   inferior endplates are both tilted more than ``max_endplate_deviation_deg`` from square to the column its
   neighbours define (a wedge keeps one endplate square). No reference body (and noted): Hp above
   ``reference_max_height_to_spacing_ratio`` of that spacing (a mask leaking past an endplate would inflate its
   neighbours' expected heights); segmentation quality below ``min_segmentation_quality``. Both also make the
   grade ``low_confidence`` (confidence halved). The findings are in ``reliability_notes``.

Everything that cannot be measured is reported as not assessable with the reason, never as grade 0.
"""

from pipeline.morphometry.config import CONFIG_FILE, SECTION, MorphometryConfig, load_morphometry_config
from pipeline.morphometry.measure import measure_vertebrae

__all__ = ["CONFIG_FILE", "SECTION", "MorphometryConfig", "load_morphometry_config", "measure_vertebrae"]
