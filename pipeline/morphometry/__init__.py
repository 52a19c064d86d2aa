"""Height-loss morphometry of vertebral bodies on sagittal MRI.

For each labelled vertebral body: anterior / middle / posterior heights (Ha, Hm, Hp) on its mid-sagittal
section, the expected height from normal neighbours, height loss %, Genant semi-quantitative grade,
morphology (wedge / biconcave / crush), wedge angle, posterior-wall bulge and canal compromise, and the
six landmarks in LPS mm for overlays.

Method (per body)
-----------------
1. **Section.** On the slices within ``slice_search_mm`` of the body's ``mid_slice`` the one with the largest
   body area is the mid-sagittal section; slices within ``neighbour_slice_mm`` of it are measured too, as a
   robustness check (their spread of height loss is reported).
2. **Contour.** The largest connected part of the body (holes filled) is traced at the 0.5 iso-level of the
   mask (sub-pixel, in mm with the anisotropic in-plane spacing).
3. **Body frame.** The AP axis ``u`` (pointing anterior) and height axis ``v`` (pointing superior) start from
   the minimum-area bounding rectangle of the contour (the side nearest the patient's superior direction is
   the height axis) and are refined until ``u`` runs along the mean direction of the superior and inferior
   endplates (least-squares lines through the outer endplate profiles on the central part of the body).
   Tilted bodies in a curved spine are therefore measured in their own frame.
4. **Heights.** With ``D`` the AP depth (outer edge to outer edge along ``u``), Ha is the extent of the
   body along ``v`` at ``height_inset_fraction * D`` inside the anterior edge, Hp the same inside the
   posterior edge, Hm at mid-depth; each is averaged over a narrow band (``height_band_fraction * D``) to
   average out the pixel staircase. The six landmarks are the endpoints of these three chords.
   Wedge angle: the angle between the superior line (through the anterior and posterior superior landmarks)
   and the inferior line; positive when the body is lower anteriorly.
5. **Reference height.** Bodies whose own ratios are normal start as "normal"; each body's expected
   posterior height is interpolated between the posterior heights of the nearest normal bodies above and
   below (or extrapolated from the nearest normal bodies on one side with their own level-to-level trend,
   bounded by ``max_growth_per_level_pct``); the most deviant body is removed from the normal set while any
   normal body falls below ``crush_ratio_max`` of its expected height. Without any normal neighbour within
   ``max_reference_gap_levels`` the body's own Hp is the reference (and uniform collapse cannot be seen).
6. **Grade and shape.** Height loss % = ``100 * (1 - min(Ha, Hm, Hp) / reference)`` (0 when the body is not
   smaller than expected); Genant grade from the configured cut-offs; morphology is the pattern whose ratio
   (Ha/Hp wedge, Hm/Hp biconcave, Hp/reference crush) is lowest, when that ratio is below its threshold or
   the body is graded; otherwise normal.
7. **Posterior wall.** The posterior edge between the posterior corners (inset ``wall_corner_inset_fraction``
   of Hp from each endplate) is compared with the straight line joining the corners: the largest
   displacement towards the canal is the bulge (mm). The expected sagittal canal diameter is the CSF column's
   AP extent on the fluid-sensitive ``canal_image`` behind the normal neighbours, and canal compromise is
   ``100 * bulge / expected``.

Everything that cannot be measured is reported as not assessable with the reason, never as grade 0.
"""

from pipeline.morphometry.config import CONFIG_FILE, SECTION, MorphometryConfig, load_morphometry_config
from pipeline.morphometry.measure import measure_vertebrae

__all__ = ["CONFIG_FILE", "SECTION", "MorphometryConfig", "load_morphometry_config", "measure_vertebrae"]
