"""Shape plumbing and slicing kernels (shape.py, slicing.py) against onnx's reference evaluator, on
hypothesis-generated shapes and attributes, plus the errors for bad shapes and absurd sizes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument

Inputs = list[tuple[str, np.ndarray | None]]


def build(
    op: str, inputs: Inputs, attrs: dict[str, Any] | None = None, outputs: int = 1, opset: int = 19
) -> onnx.ModelProto:
    """One-node model; every given input is a graph input, None leaves an optional input out."""
    names = [name if value is not None else "" for name, value in inputs]
    while names and not names[-1]:
        names.pop()
    out_names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, out_names, **(attrs or {}))
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), None)
        for name, value in inputs
        if value is not None
    ]
    graph_outputs = [helper.make_value_info(name, onnx.TypeProto()) for name in out_names]
    proto = helper.make_model(
        helper.make_graph([node], "g", graph_inputs, graph_outputs), opset_imports=[helper.make_opsetid("", opset)]
    )
    proto.ir_version = 9
    return proto


def feed_of(inputs: Inputs) -> dict[str, np.ndarray]:
    return {name: value for name, value in inputs if value is not None}


def run(proto: onnx.ModelProto, inputs: Inputs) -> list[np.ndarray]:
    return InferenceSession(proto.SerializeToString()).run(None, feed_of(inputs))


def check(
    op: str, inputs: Inputs, attrs: dict[str, Any] | None = None, outputs: int = 1, opset: int = 19
) -> list[np.ndarray]:
    """Run through onnxforge and the reference evaluator; values, shapes and dtypes must agree exactly."""
    proto = build(op, inputs, attrs, outputs, opset)
    ours = run(proto, inputs)
    expected = ReferenceEvaluator(proto).run(None, feed_of(inputs))
    for got, want in zip(ours, expected):
        want = np.asarray(want)
        assert isinstance(got, np.ndarray)
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        assert got.shape == want.shape, (got.shape, want.shape)
        np.testing.assert_array_equal(got, want)
    return ours


def i64(values: Any) -> np.ndarray:
    return np.array(values, dtype=np.int64)


shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4)
nonempty_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4)


def data(shape: list[int] | tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    return np.arange(math.prod(shape)).astype(dtype).reshape(shape)


@st.composite
def reshape_cases(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    shape = draw(st.lists(st.integers(1, 4), min_size=0, max_size=4))
    # regroup consecutive dims, then maybe infer one (-1) or copy one (0) from the input
    cuts = sorted(draw(st.sets(st.integers(1, max(len(shape) - 1, 1)), max_size=3))) if len(shape) > 1 else []
    bounds = [0, *cuts, len(shape)]
    target = [math.prod(shape[a:b]) for a, b in zip(bounds, bounds[1:])] if shape else []
    target += [1] * draw(st.integers(0, 2))
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    copyable = [i for i, d in enumerate(target) if i < len(shape) and d == shape[i]]
    if copyable and draw(st.booleans()):
        target[draw(st.sampled_from(copyable))] = 0
    return shape, target


@settings(max_examples=25, deadline=None)
@given(reshape_cases(), st.sampled_from([13, 14, 19]))
def test_reshape_matches_reference(case: tuple[list[int], list[int]], opset: int) -> None:
    shape, target = case
    check("Reshape", [("x", data(shape)), ("shape", i64(target))], opset=opset)


def test_reshape_allowzero_and_attribute_form() -> None:
    x = np.zeros((0, 3), dtype=np.float32)
    (out,) = check("Reshape", [("x", x), ("shape", i64([3, 0]))], {"allowzero": 1}, opset=14)
    assert out.shape == (3, 0)
    (out,) = run(build("Reshape", [("x", data([2, 3]))], {"shape": [3, -1]}, opset=4), [("x", data([2, 3]))])
    assert out.shape == (3, 2)


@pytest.mark.parametrize(
    ("shape", "target", "message"),
    [
        ([2, 3], [4, 2], "6 elements"),
        ([2, 3], [-1, -1], "more than one -1"),
        ([2, 3], [4, -1], "cannot infer"),
        ([2, 3], [2, 3, 0], "copies dimension 2"),
        ([2, 3], [2**40, 2**40], "requested shape"),
    ],
)
def test_reshape_errors(shape: list[int], target: list[int], message: str) -> None:
    inputs: Inputs = [("x", data(shape)), ("shape", i64(target))]
    with pytest.raises(InvalidArgument, match=message):
        run(build("Reshape", inputs), inputs)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 4), max_size=4), st.data())  # the reference reshapes with -1: no empty dims
def test_flatten_matches_reference(shape: list[int], draw: st.DataObject) -> None:
    axis = draw.draw(st.integers(-len(shape), len(shape)))
    check("Flatten", [("x", data(shape))], {"axis": axis})


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=4), st.data(), st.sampled_from([11, 13, 19]))
def test_squeeze_unsqueeze_match_reference(shape: list[int], draw: st.DataObject, opset: int) -> None:
    x = data(shape)
    ones = [i for i, d in enumerate(shape) if d == 1]
    # Squeeze-1/11 of the reference squeezes one axis at a time, last first: it gets them positive, sorted
    squeeze_axes = draw.draw(
        st.none() | st.lists(st.sampled_from(ones), unique=True, min_size=1) if ones else st.none()
    )
    if squeeze_axes is not None:
        squeeze_axes = sorted(squeeze_axes)
    rank = len(shape) + draw.draw(st.integers(1, 2))
    unsqueeze_axes = draw.draw(
        st.lists(st.integers(0, rank - 1), unique=True, min_size=rank - len(shape), max_size=rank - len(shape))
    )
    # onnx's reference inserts Unsqueeze axes one by one in the given order; the spec says order does
    # not matter, so it sees them sorted, and onnxforge gets them shuffled and partly negative.
    shuffled = [a - rank if draw.draw(st.booleans()) else a for a in draw.draw(st.permutations(unsqueeze_axes))]
    unsqueeze_axes = sorted(unsqueeze_axes)
    if opset < 13:
        check("Squeeze", [("x", x)], {} if squeeze_axes is None else {"axes": squeeze_axes}, opset=opset)
        (out,) = check("Unsqueeze", [("x", x)], {"axes": unsqueeze_axes}, opset=opset)
        (again,) = run(build("Unsqueeze", [("x", x)], {"axes": shuffled}, opset=opset), [("x", x)])
    else:
        check("Squeeze", [("x", x), ("axes", None if squeeze_axes is None else i64(squeeze_axes))], opset=opset)
        (out,) = check("Unsqueeze", [("x", x), ("axes", i64(unsqueeze_axes))], opset=opset)
        inputs: Inputs = [("x", x), ("axes", i64(shuffled))]
        (again,) = run(build("Unsqueeze", inputs, opset=opset), inputs)
    assert again.shape == out.shape


def test_squeeze_takes_axes_in_any_order_and_sign() -> None:
    x = data([1, 2, 1, 1])
    for axes in ([0, -1], [-1, 0], [3, 0, -2]):
        inputs: Inputs = [("x", x), ("axes", i64(axes))]
        (out,) = run(build("Squeeze", inputs), inputs)
        assert out.shape == tuple(d for i, d in enumerate(x.shape) if i not in {a % 4 for a in axes})


def test_squeeze_and_unsqueeze_errors() -> None:
    inputs: Inputs = [("x", data([2, 1])), ("axes", i64([0]))]
    with pytest.raises(InvalidArgument, match="not of size 1"):
        run(build("Squeeze", inputs), inputs)
    inputs = [("x", data([2, 1])), ("axes", i64([1, -3]))]
    with pytest.raises(InvalidArgument, match="same axis"):
        run(build("Unsqueeze", inputs), inputs)


@settings(max_examples=20, deadline=None)
@given(shapes, st.data())
def test_transpose_matches_reference(shape: list[int], draw: st.DataObject) -> None:
    perm = draw.draw(st.none() | st.permutations(list(range(len(shape))))) if shape else None
    check("Transpose", [("x", data(shape))], {} if perm is None else {"perm": list(perm)})


@settings(max_examples=20, deadline=None)
@given(shapes, st.data())
def test_shape_and_size_match_reference(shape: list[int], draw: st.DataObject) -> None:
    # the reference does not clamp a negative end below -rank (the spec does: see the next test)
    start, end = (draw.draw(st.none() | st.integers(-len(shape), 6)) for _ in range(2))
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    (out,) = check("Shape", [("x", data(shape))], attrs)
    assert out.dtype == np.int64
    (size,) = check("Size", [("x", data(shape))])
    assert size.shape == () and size.dtype == np.int64 and int(size) == math.prod(shape)


@pytest.mark.parametrize(("start", "end", "expected"), [(-10, 10, [2, 3, 4]), (0, -4, []), (2, 1, []), (-1, None, [4])])
def test_shape_clamps_start_and_end(start: int, end: int | None, expected: list[int]) -> None:
    attrs = {"start": start} if end is None else {"start": start, "end": end}
    (out,) = run(build("Shape", [("x", data([2, 3, 4]))], attrs), [("x", data([2, 3, 4]))])
    assert out.tolist() == expected and out.dtype == np.int64


@st.composite
def expand_cases(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    shape = draw(st.lists(st.integers(1, 3), max_size=3))
    target = [draw(st.sampled_from([1, 2, 3])) if d == 1 else draw(st.sampled_from([1, d])) for d in shape]
    return shape, draw(st.lists(st.integers(1, 3), max_size=2)) + target


@settings(max_examples=20, deadline=None)
@given(expand_cases(), st.sampled_from([np.float32, np.int64, np.bool_]))
def test_expand_matches_reference(case: tuple[list[int], list[int]], dtype: Any) -> None:
    shape, target = case
    (out,) = check("Expand", [("x", data(shape, dtype)), ("shape", i64(target))])
    assert out.flags.writeable


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=3), st.data())
def test_tile_matches_reference(shape: list[int], draw: st.DataObject) -> None:
    repeats = draw.draw(st.lists(st.integers(0, 3), min_size=len(shape), max_size=len(shape)))
    check("Tile", [("x", data(shape)), ("repeats", i64(repeats))])


@pytest.mark.parametrize(
    ("op", "inputs"),
    [
        ("Expand", [("x", data([1])), ("shape", i64([2**20, 2**20]))]),
        ("Tile", [("x", data([4, 4])), ("repeats", i64([2**20, 2**20]))]),
    ],
)
def test_absurd_sizes_fail_cleanly(op: str, inputs: Inputs) -> None:
    with pytest.raises(InvalidArgument, match=r"requested shape \[\d+, \d+\] has \d+ elements"):
        run(build(op, inputs), inputs)


def test_expand_rejects_incompatible_shapes() -> None:
    inputs: Inputs = [("x", data([3])), ("shape", i64([2]))]
    with pytest.raises(InvalidArgument, match="cannot be broadcast"):
        run(build("Expand", inputs), inputs)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 2), st.integers(1, 3), st.sampled_from(["DCR", "CRD"]))
def test_depth_space_round_trip_matches_reference(blocksize: int, channels: int, side: int, mode: str) -> None:
    x = data([2, channels * blocksize * blocksize, side, side + 1])
    check("DepthToSpace", [("x", x)], {"blocksize": blocksize, "mode": mode})
    check("SpaceToDepth", [("x", data([1, channels, side * blocksize, blocksize]))], {"blocksize": blocksize})
    if mode == "CRD":  # SpaceToDepth's mode is new in opset 28; it inverts DepthToSpace's
        (space,) = run(build("DepthToSpace", [("x", x)], {"blocksize": blocksize, "mode": mode}, opset=28), [("x", x)])
        (back,) = run(
            build("SpaceToDepth", [("x", space)], {"blocksize": blocksize, "mode": mode}, opset=28), [("x", space)]
        )
        np.testing.assert_array_equal(back, x)


@settings(max_examples=20, deadline=None)
@given(nonempty_shapes, st.data())
def test_concat_matches_reference(shape: list[int], draw: st.DataObject) -> None:
    axis = draw.draw(st.integers(-len(shape), len(shape) - 1))
    parts: Inputs = []
    for i in range(draw.draw(st.integers(1, 3))):
        part = list(shape)
        part[axis] = draw.draw(st.integers(0, 3))
        parts.append((f"x{i}", data(part) + i))
    check("Concat", parts, {"axis": axis})


def test_concat_rejects_mismatched_shapes() -> None:
    inputs: Inputs = [("a", data([2, 3])), ("b", data([3, 3]))]
    with pytest.raises(InvalidArgument, match="does not match"):
        run(build("Concat", inputs, {"axis": 1}), inputs)


@settings(max_examples=25, deadline=None)
@given(nonempty_shapes, st.data(), st.sampled_from([11, 13, 18]))
def test_split_matches_reference(shape: list[int], draw: st.DataObject, opset: int) -> None:
    axis = draw.draw(st.integers(-len(shape), len(shape) - 1))
    dim = shape[axis]
    x = data(shape)
    if draw.draw(st.booleans()):
        cuts = sorted(draw.draw(st.lists(st.integers(0, dim), max_size=3)))
        split = np.diff([0, *cuts, dim]).tolist()
        if opset < 13:
            check("Split", [("x", x)], {"axis": axis, "split": split}, outputs=len(split), opset=opset)
        else:
            check("Split", [("x", x), ("split", i64(split))], {"axis": axis}, outputs=len(split), opset=opset)
    elif opset < 18:
        count = draw.draw(st.sampled_from([n for n in range(1, dim + 1) if dim % n == 0]))
        check("Split", [("x", x)], {"axis": axis}, outputs=count, opset=opset)
    else:
        count = draw.draw(st.integers(1, dim))
        if (-(-dim // count)) * (count - 1) > dim:
            return  # not splittable into `count` chunks of ceil(dim / count)
        check("Split", [("x", x)], {"axis": axis, "num_outputs": count}, outputs=count, opset=opset)


def test_split_errors() -> None:
    inputs: Inputs = [("x", data([5]))]
    with pytest.raises(InvalidArgument, match="evenly"):
        run(build("Split", inputs, outputs=2, opset=13), inputs)
    inputs = [("x", data([5])), ("split", i64([2, 2]))]
    with pytest.raises(InvalidArgument, match="sum to"):
        run(build("Split", inputs, outputs=2, opset=13), inputs)


bound = st.integers(-6, 6) | st.sampled_from([2**63 - 1, -(2**63), -(2**63) + 1, 2**31 - 1])


@st.composite
def slice_cases(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    axes = draw(st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1))
    axes = [a - len(shape) if draw(st.booleans()) else a for a in axes]
    steps = [draw(st.sampled_from([1, 2, 3, -1, -2])) for _ in axes]
    starts = [draw(bound) for _ in axes]
    # onnx's reference uses Python slicing, which differs from the spec for a negative step and a start
    # below -dim (the spec clamps it to 0); that corner has its own test.
    starts = [max(s, -shape[a]) if st_ < 0 else s for s, a, st_ in zip(starts, axes, steps)]
    return {"shape": shape, "starts": starts, "ends": [draw(bound) for _ in axes], "axes": axes, "steps": steps}


@settings(max_examples=30, deadline=None)
@given(slice_cases(), st.booleans())
def test_slice_matches_reference(case: dict[str, Any], with_steps: bool) -> None:
    x = data(case["shape"])
    steps = case["steps"] if with_steps else [1] * len(case["axes"])
    check(
        "Slice",
        [
            ("x", x),
            ("starts", i64(case["starts"])),
            ("ends", i64(case["ends"])),
            ("axes", i64(case["axes"])),
            ("steps", i64(steps)),
        ],
    )
    if not with_steps:
        attrs = {"starts": case["starts"], "ends": case["ends"], "axes": [a % x.ndim for a in case["axes"]]}
        check("Slice", [("x", x)], attrs, opset=9)


def test_slice_clamps_negative_step_start_per_spec() -> None:
    x = data([5])
    inputs: Inputs = [
        ("x", x),
        ("starts", i64([-100])),
        ("ends", i64([-(2**63)])),
        ("axes", i64([0])),
        ("steps", i64([-1])),
    ]
    (out,) = run(build("Slice", inputs), inputs)
    np.testing.assert_array_equal(out, x[:1])  # start clamps to 0, the end is before the first element


def test_slice_errors() -> None:
    inputs: Inputs = [
        ("x", data([4])),
        ("starts", i64([0])),
        ("ends", i64([4])),
        ("axes", i64([0])),
        ("steps", i64([0])),
    ]
    with pytest.raises(InvalidArgument, match="must not be 0"):
        run(build("Slice", inputs), inputs)
    inputs = [("x", data([4])), ("starts", i64([0])), ("ends", i64([4])), ("axes", i64([1]))]
    with pytest.raises(InvalidArgument, match="out of range"):
        run(build("Slice", inputs), inputs)


@st.composite
def pad_cases(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    mode = draw(st.sampled_from(["constant", "reflect", "edge", "wrap"]))
    use_axes = draw(st.booleans())
    axes = (
        draw(st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1)) if use_axes else list(range(len(shape)))
    )
    top = {"reflect": lambda d: d - 1, "wrap": lambda d: d}.get(mode, lambda d: 3)
    pads = [draw(st.integers(0, top(shape[a]))) for a in axes] + [draw(st.integers(0, top(shape[a]))) for a in axes]
    return {"shape": shape, "mode": mode, "axes": axes if use_axes else None, "pads": pads}


@settings(max_examples=30, deadline=None)
@given(pad_cases(), st.sampled_from([np.float32, np.int32]))
def test_pad_matches_reference(case: dict[str, Any], dtype: Any) -> None:
    x = data(case["shape"], dtype)
    value = np.array(7, dtype=dtype)
    axes = None if case["axes"] is None else i64(case["axes"])
    check("Pad", [("x", x), ("pads", i64(case["pads"])), ("value", value), ("axes", axes)], {"mode": case["mode"]})
    if case["axes"] is None and case["mode"] != "wrap":
        check("Pad", [("x", x), ("pads", i64(case["pads"]))], {"mode": case["mode"]}, opset=13)
        if dtype == np.float32:  # Pad-2 only takes floats
            check("Pad", [("x", x)], {"mode": case["mode"], "pads": case["pads"], "value": 7.0}, opset=10)


def test_pad_negative_pads_crop() -> None:
    x = data([3, 4])
    inputs: Inputs = [("x", x), ("pads", i64([-1, 1, 0, -2]))]
    (out,) = run(build("Pad", inputs, {"mode": "constant"}), inputs)
    np.testing.assert_array_equal(out, np.pad(x[1:, :2], [(0, 0), (1, 0)]))
    (out,) = run(build("Pad", inputs, {"mode": "edge"}), inputs)
    np.testing.assert_array_equal(out, np.pad(x[1:, :2], [(0, 0), (1, 0)], mode="edge"))
    inputs = [("x", x), ("pads", i64([-2, 0, -2, 0]))]
    with pytest.raises(InvalidArgument, match="crop more"):
        run(build("Pad", inputs), inputs)
