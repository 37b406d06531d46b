"""Gather/Scatter/NonZero/Compress (indexing.py) and TopK/Unique/CumSum/ReverseSequence (sorting.py) against
onnx's reference evaluator on hypothesis-generated cases, and the InvalidArgument for out-of-range indices."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxforge import InvalidArgument

# One-node model helpers shared with the shape tests.
from tests.runtime.kernels.test_shape import Inputs, build, check, data, feed_of, i64, run  # noqa: F401


def expect_out_of_bounds(op: str, inputs: Inputs, attrs: dict[str, Any] | None = None, bad: int | None = None) -> None:
    pattern = "out of bounds" if bad is None else f"index {bad} is out of bounds"
    with pytest.raises(InvalidArgument, match=pattern):
        run(build(op, inputs, attrs), inputs)


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3)
index_dtypes = st.sampled_from([np.int32, np.int64])


@settings(max_examples=25, deadline=None)
@given(shapes, st.data(), index_dtypes)
def test_gather_matches_reference(shape: list[int], draw: st.DataObject, index_dtype: Any) -> None:
    axis = draw.draw(st.integers(-len(shape), len(shape) - 1))
    dim = shape[axis]
    index_shape = draw.draw(st.lists(st.integers(0, 3), max_size=2))
    indices = np.array(
        draw.draw(
            st.lists(st.integers(-dim, dim - 1), min_size=math.prod(index_shape), max_size=math.prod(index_shape))
        )
    )
    check("Gather", [("x", data(shape)), ("i", indices.astype(index_dtype).reshape(index_shape))], {"axis": axis})


@pytest.mark.parametrize("bad", [3, -4])
def test_gather_rejects_out_of_range_indices(bad: int) -> None:
    expect_out_of_bounds("Gather", [("x", data([3, 2])), ("i", i64([0, bad]))], {"axis": 0}, bad)


def test_gather_scalar_index_returns_an_array() -> None:
    inputs: Inputs = [("x", data([4])), ("i", i64(-1))]
    (out,) = check("Gather", inputs)
    assert isinstance(out, np.ndarray) and out.shape == ()


@settings(max_examples=25, deadline=None)
@given(shapes, st.data(), index_dtypes)
def test_gather_elements_matches_reference(shape: list[int], draw: st.DataObject, index_dtype: Any) -> None:
    axis = draw.draw(st.integers(-len(shape), len(shape) - 1))
    # the reference only takes indices as large as the data outside the axis (see the next test)
    index_shape = [draw.draw(st.integers(0, 4)) if i == axis % len(shape) else d for i, d in enumerate(shape)]
    dim = shape[axis]
    flat = draw.draw(
        st.lists(st.integers(-dim, dim - 1), min_size=math.prod(index_shape), max_size=math.prod(index_shape))
    )
    indices = np.array(flat, dtype=index_dtype).reshape(index_shape)
    check("GatherElements", [("x", data(shape)), ("i", indices)], {"axis": axis % len(shape)})  # reference: axis >= 0
    (out,) = run(
        build("GatherElements", [("x", data(shape)), ("i", indices)], {"axis": axis}),
        [("x", data(shape)), ("i", indices)],
    )
    np.testing.assert_array_equal(
        out, np.take_along_axis(data(shape), indices.astype(np.int64) % shape[axis], axis=axis)
    )


def test_gather_elements_with_indices_smaller_than_data() -> None:
    x = data([3, 4])
    indices = i64([[2, 0], [-1, 1]])
    (out,) = run(build("GatherElements", [("x", x), ("i", indices)], {"axis": 0}), [("x", x), ("i", indices)])
    np.testing.assert_array_equal(out, [[x[2, 0], x[0, 1]], [x[2, 0], x[1, 1]]])


def test_gather_elements_rejects_out_of_range_indices() -> None:
    expect_out_of_bounds("GatherElements", [("x", data([2, 2])), ("i", i64([[0, 2]]))], {"axis": 1}, 2)


@st.composite
def gather_nd_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    batch = draw(st.integers(0, len(shape) - 1))
    depth = draw(st.integers(1, len(shape) - batch))
    middle = draw(st.lists(st.integers(1, 3), max_size=2))
    index_shape = [*shape[:batch], *middle, depth]
    columns = [
        np.array(
            draw(
                st.lists(
                    st.integers(-d, d - 1), min_size=math.prod(index_shape[:-1]), max_size=math.prod(index_shape[:-1])
                )
            )
        )
        for d in shape[batch : batch + depth]
    ]
    indices = np.stack(columns, axis=-1).reshape(index_shape) if columns else np.zeros(index_shape, np.int64)
    return data(shape), indices.astype(np.int64), batch


@settings(max_examples=25, deadline=None)
@given(gather_nd_cases())
def test_gather_nd_matches_reference(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    x, indices, batch = case
    check("GatherND", [("x", x), ("i", indices)], {"batch_dims": batch})


def test_gather_nd_rejects_out_of_range_indices() -> None:
    expect_out_of_bounds("GatherND", [("x", data([2, 3])), ("i", i64([[1, 3]]))], bad=3)


@st.composite
def scatter_nd_cases(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    depth = draw(st.integers(1, len(shape)))
    reduction = draw(st.sampled_from(["none", "add", "mul", "max", "min"]))
    cells = list(np.ndindex(*shape[:depth]))
    count = draw(st.integers(0, len(cells) if reduction == "none" else 6))
    if reduction == "none":  # duplicate indices are undefined without a reduction
        chosen = draw(st.permutations(cells))[:count]
    else:
        chosen = [draw(st.sampled_from(cells)) for _ in range(count)]
    chosen = [[c - shape[i] if draw(st.booleans()) else c for i, c in enumerate(cell)] for cell in chosen]
    indices = np.array(chosen, dtype=np.int64).reshape(count, depth)
    updates = (np.arange(count * math.prod(shape[depth:])) + 2).astype(np.float32).reshape([count, *shape[depth:]])
    return {"x": data(shape), "i": indices, "u": updates, "reduction": reduction}


@settings(max_examples=30, deadline=None)
@given(scatter_nd_cases())
def test_scatter_nd_matches_reference(case: dict[str, Any]) -> None:
    check("ScatterND", [("x", case["x"]), ("i", case["i"]), ("u", case["u"])], {"reduction": case["reduction"]})


def test_scatter_nd_rejects_out_of_range_and_does_not_write_its_input() -> None:
    x = data([2, 2])
    before = x.copy()
    expect_out_of_bounds("ScatterND", [("x", x), ("i", i64([[0, -3]])), ("u", np.ones(1, np.float32))], bad=-3)
    inputs: Inputs = [("x", x), ("i", i64([[1, 1]])), ("u", np.array([9], np.float32))]
    run(build("ScatterND", inputs, {"reduction": "add"}), inputs)
    np.testing.assert_array_equal(x, before)


@st.composite
def scatter_elements_cases(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    reduction = draw(st.sampled_from(["none", "add", "mul", "max", "min"]))
    dim = shape[axis]
    index_shape = list(shape)
    if reduction == "none":  # one write per target: a permutation slice along the axis
        index_shape[axis] = draw(st.integers(0, dim))
        order = draw(st.permutations(list(range(dim))))[: index_shape[axis]]
        base = np.array(order, dtype=np.int64).reshape([-1 if i == axis % len(shape) else 1 for i in range(len(shape))])
        indices = np.broadcast_to(base, index_shape).copy()
    else:
        index_shape[axis] = draw(st.integers(0, 4))
        flat = draw(
            st.lists(st.integers(-dim, dim - 1), min_size=math.prod(index_shape), max_size=math.prod(index_shape))
        )
        indices = np.array(flat, dtype=np.int64).reshape(index_shape)
    updates = (np.arange(indices.size) + 2).astype(np.float32).reshape(index_shape)
    return {"x": data(shape), "i": indices, "u": updates, "axis": axis, "reduction": reduction}


@settings(max_examples=30, deadline=None)
@given(scatter_elements_cases())
def test_scatter_elements_matches_reference(case: dict[str, Any]) -> None:
    inputs: Inputs = [("x", case["x"]), ("i", case["i"]), ("u", case["u"])]
    (out,) = check("ScatterElements", inputs, {"axis": case["axis"], "reduction": case["reduction"]})
    if case["reduction"] == "none":  # the deprecated Scatter is ScatterElements (the reference lacks it)
        (old,) = run(build("Scatter", inputs, {"axis": case["axis"]}, opset=10), inputs)
        np.testing.assert_array_equal(old, out)


def test_scatter_elements_rejects_out_of_range_indices() -> None:
    inputs: Inputs = [("x", data([2, 3])), ("i", i64([[3]])), ("u", np.ones((1, 1), np.float32))]
    expect_out_of_bounds("ScatterElements", inputs, {"axis": 1}, 3)


@settings(max_examples=20, deadline=None)
@given(shapes, st.sampled_from([np.float32, np.int64, np.bool_]))
def test_nonzero_matches_reference(shape: list[int], dtype: Any) -> None:
    (out,) = check("NonZero", [("x", (data(shape) % 3).astype(dtype))])
    assert out.dtype == np.int64


def test_nonzero_of_a_scalar() -> None:
    (out,) = run(build("NonZero", [("x", np.array(5.0, np.float32))]), [("x", np.array(5.0, np.float32))])
    assert out.shape == (1, 1) and out.dtype == np.int64


@settings(max_examples=20, deadline=None)
@given(shapes, st.data())
def test_compress_matches_reference(shape: list[int], draw: st.DataObject) -> None:
    axis = draw.draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    length = math.prod(shape) if axis is None else shape[axis]
    condition = np.array(draw.draw(st.lists(st.booleans(), min_size=1, max_size=length)))
    check("Compress", [("x", data(shape)), ("c", condition)], {} if axis is None else {"axis": axis})


@st.composite
def topk_cases(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(shapes)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    # few distinct values, so ties are common and the lower-index-first rule is exercised
    values = np.array(draw(st.lists(st.integers(0, 3), min_size=math.prod(shape), max_size=math.prod(shape))))
    return {
        "x": values.reshape(shape),
        "axis": axis,
        "k": draw(st.integers(0, shape[axis])),
        "largest": draw(st.integers(0, 1)),
    }


@settings(max_examples=30, deadline=None)
@given(topk_cases(), st.sampled_from([np.float32, np.int64, np.uint8]))
def test_topk_matches_reference(case: dict[str, Any], dtype: Any) -> None:
    x = case["x"].astype(dtype)
    values, indices = check(
        "TopK", [("x", x), ("k", i64([case["k"]]))], {"axis": case["axis"], "largest": case["largest"]}, outputs=2
    )
    assert indices.dtype == np.int64
    if case["largest"] and dtype == np.float32:  # TopK-1 and TopK-10 take floats only
        check("TopK", [("x", x), ("k", i64([case["k"]]))], {"axis": case["axis"]}, outputs=2, opset=10)
        check("TopK", [("x", x)], {"axis": case["axis"], "k": case["k"]}, outputs=2, opset=9)


def test_topk_rejects_k_larger_than_the_axis() -> None:
    inputs: Inputs = [("x", data([3])), ("k", i64([4]))]
    with pytest.raises(InvalidArgument, match="k = 4"):
        run(build("TopK", inputs, outputs=2), inputs)


def first_occurrence_unique(x: np.ndarray) -> tuple[list[Any], list[int], list[int], list[int]]:
    """Unique with sorted=0, spelled out in Python (the reference gets multi-d inputs wrong)."""
    flat = x.reshape(-1).tolist()
    order: list[Any] = []
    for value in flat:
        if value not in order:
            order.append(value)
    return order, [flat.index(v) for v in order], [order.index(v) for v in flat], [flat.count(v) for v in order]


@settings(max_examples=25, deadline=None)
@given(shapes, st.data())
def test_unique_matches_reference(shape: list[int], draw: st.DataObject) -> None:
    x = np.array(
        draw.draw(st.lists(st.integers(0, 3), min_size=math.prod(shape), max_size=math.prod(shape))), np.float32
    ).reshape(shape)
    axis = draw.draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    check("Unique", [("x", x)], {} if axis is None else {"axis": axis}, outputs=4)
    y, first, inverse, counts = run(build("Unique", [("x", x)], {"sorted": 0}, outputs=4), [("x", x)])
    expected = first_occurrence_unique(x)
    assert (y.tolist(), first.tolist(), inverse.tolist(), counts.tolist()) == expected
    assert {a.dtype for a in (first, inverse, counts)} == {np.dtype(np.int64)}


def test_unique_sorted_false_along_an_axis_keeps_first_occurrence_order() -> None:
    x = np.array([[3, 1, 3, 0], [5, 2, 5, 1]], dtype=np.int64)
    y, first, inverse, counts = run(build("Unique", [("x", x)], {"sorted": 0, "axis": 1}, outputs=4), [("x", x)])
    assert y.tolist() == [[3, 1, 0], [5, 2, 1]]
    assert (first.tolist(), inverse.tolist(), counts.tolist()) == ([0, 1, 3], [0, 1, 0, 2], [2, 1, 1])


def test_unique_of_strings() -> None:
    x = np.array(["b", "a", "b"], dtype=object)
    y, first = run(build("Unique", [("x", x)], outputs=2), [("x", x)])
    assert y.tolist() == ["a", "b"] and first.tolist() == [1, 0]


@settings(max_examples=25, deadline=None)
@given(shapes, st.data(), st.sampled_from([np.float32, np.int32, np.int64]))
def test_cumsum_matches_reference(shape: list[int], draw: st.DataObject, dtype: Any) -> None:
    axis = draw.draw(st.integers(-len(shape), len(shape) - 1))
    attrs = {"exclusive": draw.draw(st.integers(0, 1)), "reverse": draw.draw(st.integers(0, 1))}
    axis_tensor = np.array(axis, dtype=draw.draw(index_dtypes))
    check("CumSum", [("x", data(shape, dtype)), ("axis", axis_tensor)], attrs)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2), st.booleans(), st.data())
def test_reverse_sequence_matches_reference(
    steps: int, batches: int, extra: int, time_first: bool, draw: st.DataObject
) -> None:
    shape = [steps, batches] if time_first else [batches, steps]
    shape += [2] * extra
    lengths = i64(draw.draw(st.lists(st.integers(0, steps), min_size=batches, max_size=batches)))
    attrs = {"time_axis": 0, "batch_axis": 1} if time_first else {"time_axis": 1, "batch_axis": 0}
    check("ReverseSequence", [("x", data(shape)), ("lens", lengths)], attrs)


def test_reverse_sequence_rejects_long_sequences() -> None:
    inputs: Inputs = [("x", data([3, 2])), ("lens", i64([1, 4]))]
    with pytest.raises(InvalidArgument, match=r"lengths \[4\]"):
        run(build("ReverseSequence", inputs), inputs)
