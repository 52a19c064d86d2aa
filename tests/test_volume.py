"""Round trips between Volume, SimpleITK and NIfTI; index <-> LPS conversions."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.volume import Volume

# Sagittal series: slices go left (L = +x), rows go feet (I = -z), cols go posterior (P = +y).
SAG_AXES = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])


def _sagittal(shape=(4, 5, 6), spacing=(4.0, 0.7, 0.8)) -> Volume:
    arr = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(arr, spacing, (-10.0, -50.0, 120.0), SAG_AXES)


def test_index_to_lps_follows_axes_and_spacing():
    v = _sagittal()
    np.testing.assert_allclose(v.index_to_lps([0, 0, 0]), [-10, -50, 120])
    np.testing.assert_allclose(v.index_to_lps([1, 0, 0]), [-6, -50, 120])  # one slice = 4 mm left
    np.testing.assert_allclose(v.index_to_lps([0, 2, 0]), [-10, -50, 118.6])  # rows go towards feet
    np.testing.assert_allclose(v.index_to_lps([0, 0, 3]), [-10, -47.6, 120])  # cols go posterior


def test_lps_to_index_inverts_index_to_lps():
    v = _sagittal()
    idx = np.array([[1.5, 2.25, 3.0], [0, 4, 5]])
    np.testing.assert_allclose(v.lps_to_index(v.index_to_lps(idx)), idx, atol=1e-9)


@pytest.mark.parametrize("spacing", [(4.0, 0.7, 0.8), (1.0, 1.0, 1.0), (3.3, 0.45, 1.2)])
def test_sitk_round_trip_keeps_voxels_and_geometry(spacing):
    v = _sagittal(spacing=spacing)
    img = v.to_sitk()
    # SimpleITK's physical point of index (x=col, y=row, z=slice) must equal ours.
    np.testing.assert_allclose(img.TransformIndexToPhysicalPoint((3, 2, 1)), v.index_to_lps([1, 2, 3]))
    back = Volume.from_sitk(img)
    assert back.same_grid(v)
    np.testing.assert_array_equal(back.array, v.array)


def test_nifti_round_trip(tmp_path: Path):
    v = _sagittal()
    p = tmp_path / "v.nii.gz"
    sitk.WriteImage(v.to_sitk(), str(p))
    back = Volume.from_sitk(sitk.ReadImage(str(p)))
    assert back.same_grid(v, tol_mm=1e-4)
    np.testing.assert_array_equal(back.array, v.array)


def test_resample_like_identity_grid_returns_same_voxels():
    v = _sagittal()
    np.testing.assert_allclose(v.resample_like(v).array, v.array, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"array": np.zeros((3, 3))}, "3-D"),
        ({"spacing_mm": (1.0, 0.0, 1.0)}, "positive"),
        ({"axes_lps": np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])}, "orthonormal"),
    ],
)
def test_invalid_geometry_is_rejected(kwargs, match):
    args = {
        "array": np.zeros((2, 2, 2)),
        "spacing_mm": (1.0, 1.0, 1.0),
        "origin_lps": (0.0, 0.0, 0.0),
        "axes_lps": np.eye(3),
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        Volume(**args)
