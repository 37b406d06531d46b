"""Reductions and ArgMax/ArgMin against onnx's reference evaluator: both the attribute-axes and the
input-axes forms, with generated shapes (empty ones included), axes, keepdims and noop_with_empty_axes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.runtime.kernels.test_elementwise import (
    FLOATS,
    LATEST,
    assert_same,
    random_array,
    run_ours,
    run_reference,
    seeds,
    single_op_model,
)

# op -> (opset where axes became an input, extra integer types it takes from then on)
REDUCTIONS: dict[str, tuple[int, list[Any]]] = {
    "ReduceSum": (13, [np.int32, np.int64, np.uint32]),
    "ReduceMean": (18, [np.int32, np.int64]),
    "ReduceMax": (18, [np.int8, np.uint8, np.int32, np.int64]),
    "ReduceMin": (18, [np.int8, np.uint8, np.int32, np.int64]),
    "ReduceProd": (18, [np.int32, np.int64]),
    "ReduceL1": (18, [np.int32, np.int64]),
    "ReduceL2": (18, [np.int32, np.int64]),
    "ReduceLogSum": (18, []),
    "ReduceLogSumExp": (18, []),
    "ReduceSumSquare": (18, [np.int32, np.int64, np.uint64]),
}
shapes = st.lists(st.integers(0, 3), max_size=4).map(tuple)


@st.composite
def reduction_cases(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(REDUCTIONS)))
    input_since, int_types = REDUCTIONS[op]
    form = draw(st.sampled_from(["attribute", "input"]))
    dtype = draw(st.sampled_from(FLOATS + int_types)) if form == "input" else draw(st.sampled_from(FLOATS))
    opset = draw(st.sampled_from([input_since, LATEST])) if form == "input" else input_since - 1
    if op in ("ReduceLogSum", "ReduceLogSumExp") and opset == LATEST and dtype not in FLOATS:
        dtype = np.float32
    shape = draw(shapes)
    if op == "ReduceLogSumExp" and not shape:
        shape = (1,)  # onnx's ReduceLogSumExp writes into a numpy scalar for 0-d input
    rank = len(shape)
    axes = draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(0, rank - 1), unique=True, max_size=rank).map(
                lambda picked: [a - rank if draw(st.booleans()) else a for a in picked]
            ),
        )
        if rank
        else st.none()
    )
    return {
        "op": op,
        "form": form,
        "dtype": dtype,
        "opset": opset,
        "shape": shape,
        "axes": axes,
        "keepdims": draw(st.integers(0, 1)),
        "noop": draw(st.integers(0, 1)),
        "constant_axes": draw(st.booleans()),
        "seed": draw(seeds),
    }


@settings(max_examples=40, deadline=None)
@given(case=reduction_cases())
def test_reductions_match_the_reference(case: dict[str, Any]) -> None:
    op, dtype, axes = case["op"], np.dtype(case["dtype"]), case["axes"]
    rng = np.random.default_rng(case["seed"])
    positive = op == "ReduceLogSum" or dtype.kind == "u"
    x = random_array(rng, case["shape"], dtype, 0.5 if positive else -3, 3)
    if case["form"] == "attribute":
        attrs: dict[str, Any] = {"keepdims": case["keepdims"]}
        if axes:  # onnx.helper cannot type an empty list attribute
            attrs["axes"] = axes
        inputs: list[np.ndarray | None] = [x]
        model = single_op_model(op, inputs, opset=case["opset"], **attrs)
    else:
        inputs = [x, None if axes is None else np.array(axes, dtype=np.int64)]
        constants = frozenset({1}) if case["constant_axes"] else frozenset()
        model = single_op_model(
            op,
            inputs,
            opset=case["opset"],
            constants=constants,
            keepdims=case["keepdims"],
            noop_with_empty_axes=case["noop"],
        )
    with np.errstate(all="ignore"):
        (ours,) = run_ours(model, inputs)
    (expected,) = run_reference(model, inputs)
    # onnx's ReduceSumSquare lets NumPy widen int32 sums to int64; the spec keeps the input type.
    assert ours.dtype == dtype
    # float16 sums accumulate in float32 here and in float16 in the reference.
    tolerance = 2e-2 if dtype == np.float16 else None
    assert_same(ours, expected.astype(dtype), rtol=tolerance, atol=tolerance or 0.0)


@pytest.mark.parametrize(
    ("op", "value"),
    [
        ("ReduceSum", 0.0),
        ("ReduceProd", 1.0),
        ("ReduceMax", -np.inf),
        ("ReduceMin", np.inf),
        ("ReduceL1", 0.0),
        ("ReduceL2", 0.0),
        ("ReduceSumSquare", 0.0),
        ("ReduceLogSum", -np.inf),
        ("ReduceLogSumExp", -np.inf),
    ],
)
def test_reducing_an_empty_set_gives_the_identity(op: str, value: float) -> None:
    x = np.zeros((2, 0, 3), dtype=np.float32)
    axes = np.array([1], dtype=np.int64)
    (out,) = run_ours(single_op_model(op, [x, axes], opset=18, constants=frozenset({1})), [x, axes])
    assert out.shape == (2, 1, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.full((2, 1, 3), value, dtype=np.float32))


def test_empty_set_extremes_of_integers_and_bools() -> None:
    axes = np.array([0], dtype=np.int64)
    x = np.zeros((0, 2), dtype=np.int32)
    (out,) = run_ours(single_op_model("ReduceMax", [x, axes], opset=18, keepdims=0), [x, axes])
    np.testing.assert_array_equal(out, np.full(2, np.iinfo(np.int32).min, dtype=np.int32))
    flags = np.zeros((0, 2), dtype=np.bool_)
    (low,) = run_ours(single_op_model("ReduceMax", [flags, axes], opset=20, keepdims=0), [flags, axes])
    (high,) = run_ours(single_op_model("ReduceMin", [flags, axes], opset=20, keepdims=0), [flags, axes])
    assert low.tolist() == [False, False] and high.tolist() == [True, True]


def test_full_reduction_without_keepdims_is_a_0d_array() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for op in REDUCTIONS:
        (out,) = run_ours(single_op_model(op, [x + 1], opset=18, keepdims=0), [x + 1])
        assert type(out) is np.ndarray and out.shape == () and out.dtype == np.float32, op


def test_integer_sums_keep_their_type() -> None:
    x = np.full((4, 4), 2**20, dtype=np.int32)
    (out,) = run_ours(single_op_model("ReduceSum", [x], opset=13, keepdims=0), [x])
    assert out.dtype == np.int32 and int(out) == 16 * 2**20


def test_reduce_log_sum_exp_is_stable() -> None:
    x = np.array([[1000.0, 1000.0], [-np.inf, -np.inf]], dtype=np.float32)
    axes = np.array([1], dtype=np.int64)
    (out,) = run_ours(single_op_model("ReduceLogSumExp", [x, axes], opset=18, keepdims=0), [x, axes])
    np.testing.assert_allclose(out, [1000 + np.log(2), -np.inf], rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    op=st.sampled_from(["ArgMax", "ArgMin"]),
    opset=st.sampled_from([11, 12, 13, LATEST]),
    dtype=st.sampled_from(FLOATS + [np.int8, np.int32, np.int64, np.uint8]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    seed=seeds,
)
def test_arg_extremes(op: str, opset: int, dtype: Any, shape: tuple[int, ...], data: st.DataObject, seed: int) -> None:
    optional: dict[str, st.SearchStrategy[Any]] = {
        "axis": st.integers(-len(shape), len(shape) - 1),
        "keepdims": st.integers(0, 1),
    }
    if opset >= 12:
        optional["select_last_index"] = st.integers(0, 1)
    attrs = data.draw(st.fixed_dictionaries({}, optional=optional))
    # Few distinct values, so ties (and select_last_index) matter.
    x = random_array(np.random.default_rng(seed), shape, dtype, 0, 2)
    model = single_op_model(op, [x], opset=opset, out_dtypes=[np.int64], **attrs)
    (ours,) = run_ours(model, [x])
    (expected,) = run_reference(model, [x])
    assert_same(ours, expected)


def test_arg_max_select_last_index() -> None:
    x = np.array([[1, 3, 3], [2, 2, 0]], dtype=np.float32)
    (first,) = run_ours(single_op_model("ArgMax", [x], out_dtypes=[np.int64], axis=1, keepdims=0), [x])
    (last,) = run_ours(
        single_op_model("ArgMax", [x], out_dtypes=[np.int64], axis=1, keepdims=0, select_last_index=1), [x]
    )
    assert first.tolist() == [1, 0] and last.tolist() == [2, 1]
