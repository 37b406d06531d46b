"""PackedWeight computes output channels with identical filters once (``compact``/``expand``)."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.kernels._packed_weight import PackedWeight, _all_distinct, _probe_direction

RNG = np.random.default_rng(3)


def test_identical_filters_are_packed_once_and_expanded_back() -> None:
    w = RNG.standard_normal((6, 4, 3, 3)).astype(np.float32)
    w[3] = w[0]
    w[5] = w[0]
    w[4] = w[1]
    packed = PackedWeight(w, group=1)
    assert packed.compact is not None and packed.expand is not None
    assert packed.compact.m == 3
    np.testing.assert_array_equal(packed.compact.matrix[0][packed.expand], packed.matrix[0])


def test_rows_equal_in_their_first_columns_only_stay_apart() -> None:
    w = RNG.standard_normal((4, 8, 3, 3)).astype(np.float32)
    w[2, :1] = w[0, :1]  # the first 9 columns of rows 0 and 2 agree (the quick head probe ties)
    w[2, 0, 0, 0] = w[0, 0, 0, 0]
    packed = PackedWeight(w, group=1)
    assert packed.compact is None and packed.expand is None


def test_distinct_filters_are_left_alone_and_the_probe_is_fixed() -> None:
    packed = PackedWeight(RNG.standard_normal((16, 3, 3, 3)).astype(np.float32), group=1)
    assert packed.compact is None
    direction = _probe_direction(27)
    assert direction is _probe_direction(27) and not direction.flags.writeable
    assert _all_distinct(direction) and abs(float(direction.mean())) < 0.1
    assert not _all_distinct(np.array([1.0, 2.0, 1.0])) and _all_distinct(np.array([3.0, 1.0, 2.0]))


def test_a_tie_in_the_first_column_alone_keeps_every_row() -> None:
    w = RNG.standard_normal((5, 4, 3, 3)).astype(np.float32)
    w[:, 0, 0, 0] = 1.0  # every row starts alike: the first-column check cannot settle it
    packed = PackedWeight(w, group=1)
    assert packed.compact is None and packed.expand is None


def test_rows_equal_but_for_the_sign_of_a_zero_are_packed_once() -> None:
    w = RNG.standard_normal((4, 3, 1, 1)).astype(np.float32)
    w[2] = w[0]
    w[0, 0, 0, 0], w[2, 0, 0, 0] = 0.0, -0.0  # equal as numbers, so the first column ties
    packed = PackedWeight(w, group=1)
    assert packed.compact is not None and packed.expand is not None
    assert packed.compact.m == 3
    assert list(packed.expand) == [0, 1, 0, 2]


def test_nan_first_entries_count_as_distinct() -> None:
    w = RNG.standard_normal((3, 2, 1, 1)).astype(np.float32)
    w[:, 0, 0, 0] = np.nan
    w[2] = w[0]  # all-NaN-led rows never compare equal, so nothing is merged
    assert PackedWeight(w, group=1).compact is None
