"""Canonical orientation: permutations and flips only, exact round trips, geometry preserved."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.readers.nifti.orient import CANONICAL, orientation_of

from .conftest import GEOMETRIES, LPS, PSR, SHAPE, ZOOMS, affine_from, rotation


def _direction(perm, signs) -> np.ndarray:
    d = np.zeros((3, 3))
    for vox in range(3):
        d[perm[vox], vox] = signs[vox]
    return d


# All 48 axis permutations x flips.
ALL_ORIENTATIONS = [_direction(p, s) for p in itertools.permutations(range(3))
                    for s in itertools.product((1, -1), repeat=3)]


def test_canonical_constant_is_ras():
    assert CANONICAL == ("R", "A", "S")


@pytest.mark.parametrize(("direction", "codes", "ornt"), [
    (np.eye(3), ("R", "A", "S"), ((0, 1), (1, 1), (2, 1))),
    (LPS, ("L", "P", "S"), ((0, -1), (1, -1), (2, 1))),
    (PSR, ("P", "S", "R"), ((1, -1), (2, 1), (0, 1))),
])
def test_known_orientations(direction, codes, ornt):
    o = orientation_of(affine_from(direction), SHAPE)
    assert o.source_codes == codes
    assert o.ornt == ornt


def test_psr_canonical_shape_and_zooms_follow_the_permutation():
    o = orientation_of(affine_from(PSR), SHAPE)
    # source axis 0 (P) -> canonical 1, axis 1 (S) -> 2, axis 2 (R) -> 0
    assert o.canonical_shape == (SHAPE[2], SHAPE[0], SHAPE[1])
    assert o.canonical_zooms(ZOOMS) == pytest.approx((ZOOMS[2], ZOOMS[0], ZOOMS[1]))


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_round_trip_is_exact_and_world_positions_agree(name):
    affine = GEOMETRIES[name][1] if GEOMETRIES[name][1] is not None else GEOMETRIES[name][0]
    o = orientation_of(affine, SHAPE)
    x = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    can = o.to_canonical(x)
    np.testing.assert_array_equal(o.to_source(can), x)
    # the same voxel value sits at the same world position in both orders
    can_aff = o.canonical_affine(affine)
    src_idx = np.array([3, 5, 7])
    value = x[tuple(src_idx)]
    can_idx = np.argwhere(can == value)[0]
    np.testing.assert_allclose(can_aff[:3, :3] @ can_idx + can_aff[:3, 3], affine[:3, :3] @ src_idx + affine[:3, 3])
    # canonical voxel axis i points mostly along world axis i (+R, +A, +S)
    cols = can_aff[:3, :3]
    assert all(cols[i, i] > 0 and np.argmax(np.abs(cols[:, i])) == i for i in range(3))


@settings(max_examples=60, deadline=None)
@given(idx=st.integers(0, len(ALL_ORIENTATIONS) - 1), ax=st.integers(0, 2),
       deg=st.floats(-40, 40), shape=st.tuples(*[st.integers(1, 6)] * 3))
def test_any_permutation_flip_with_any_moderate_rotation_round_trips(idx, ax, deg, shape):
    direction = rotation(ax, deg) @ ALL_ORIENTATIONS[idx]
    affine = affine_from(direction, zooms=(1.0, 2.0, 3.0))
    o = orientation_of(affine, shape)
    x = np.random.default_rng(0).random(shape + (2,))  # trailing axes are carried along
    can = o.to_canonical(x)
    assert can.shape[:3] == o.canonical_shape
    np.testing.assert_array_equal(o.to_source(can), x)
    can_aff = o.canonical_affine(affine)
    assert all(can_aff[i, i] > 0 for i in range(3))


def test_degenerate_affine_keeps_missing_axes_in_place():
    affine = np.diag([0.0, -2.0, 3.0, 1.0])  # axis 0 has no direction
    o = orientation_of(affine, SHAPE)
    assert o.ornt == ((0, 1), (1, -1), (2, 1))
    x = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    np.testing.assert_array_equal(o.to_source(o.to_canonical(x)), x)


def test_wrong_shape_is_refused():
    o = orientation_of(affine_from(PSR), SHAPE)
    with pytest.raises(ValueError, match="canonical spatial shape"):
        o.to_source(np.zeros(SHAPE))
