"""MergeConsecutivePass: pairs of Transpose/Reshape/Squeeze-Unsqueeze/Slice/Cast become one node or none."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxforge.passes.merge_consecutive import MergeConsecutivePass

from .helpers import F, apply, assert_same_outputs, cleaned, init, make_model, ops, rand, run, tensor_info

I64 = np.int64


def _pair(
    first: object,
    second: object,
    inits: list[object],
    out_shape: list[int],
    opset: int = 17,
    in_shape: list[int] | None = None,
) -> object:
    return make_model(
        [first, second, helper.make_node("Neg", ["b"], ["y"])],  # type: ignore[list-item]
        [tensor_info("x", F, in_shape or [2, 3, 4])],
        [tensor_info("y", F, out_shape)],
        inits,  # type: ignore[arg-type]
        opset=opset,
    )


CASES = {
    "transpose_pair": (
        _pair(
            helper.make_node("Transpose", ["x"], ["a"], perm=[1, 2, 0]),
            helper.make_node("Transpose", ["a"], ["b"], perm=[0, 2, 1]),
            [],
            [3, 2, 4],
        ),
        {"Transpose": 1, "Neg": 1},
    ),
    "transpose_inverse": (
        _pair(
            helper.make_node("Transpose", ["x"], ["a"], perm=[1, 2, 0]),
            helper.make_node("Transpose", ["a"], ["b"], perm=[2, 0, 1]),
            [],
            [2, 3, 4],
        ),
        {"Neg": 1},
    ),
    "reshape_pair": (
        _pair(
            helper.make_node("Reshape", ["x", "s1"], ["a"]),
            helper.make_node("Reshape", ["a", "s2"], ["b"]),
            [init("s1", np.array([6, 4], dtype=I64)), init("s2", np.array([4, -1], dtype=I64))],
            [4, 6],
        ),
        {"Reshape": 1, "Neg": 1},
    ),
    "squeeze_unsqueeze": (
        _pair(
            helper.make_node("Squeeze", ["x", "ax"], ["a"]),
            helper.make_node("Unsqueeze", ["a", "ax"], ["b"]),
            [init("ax", np.array([1], dtype=I64))],
            [2, 1, 4],
            in_shape=[2, 1, 4],
        ),
        {"Neg": 1},
    ),
    "unsqueeze_twice": (
        _pair(
            helper.make_node("Unsqueeze", ["x", "a1"], ["a"]),
            helper.make_node("Unsqueeze", ["a", "a2"], ["b"]),
            [init("a1", np.array([0], dtype=I64)), init("a2", np.array([-1, 2], dtype=I64))],
            [1, 2, 1, 3, 4, 1],
        ),
        {"Unsqueeze": 1, "Neg": 1},
    ),
    "unsqueeze_twice_opset11": (
        _pair(
            helper.make_node("Unsqueeze", ["x"], ["a"], axes=[3]),
            helper.make_node("Unsqueeze", ["a"], ["b"], axes=[0]),
            [],
            [1, 2, 3, 4, 1],
            opset=11,
        ),
        {"Unsqueeze": 1, "Neg": 1},
    ),
    "slice_disjoint_axes": (
        _pair(
            helper.make_node("Slice", ["x", "s0", "e0", "a0"], ["a"]),
            helper.make_node("Slice", ["a", "s1", "e1", "a1", "t1"], ["b"]),
            [
                init("s0", np.array([1], dtype=I64)),
                init("e0", np.array([3], dtype=I64)),
                init("a0", np.array([1], dtype=I64)),
                init("s1", np.array([3], dtype=I64)),
                init("e1", np.array([-10], dtype=I64)),
                init("a1", np.array([2], dtype=I64)),
                init("t1", np.array([-2], dtype=I64)),
            ],
            [2, 2, 2],
        ),
        {"Slice": 1, "Neg": 1},
    ),
    "cast_widening": (
        _pair(
            helper.make_node("Cast", ["x"], ["a"], to=TensorProto.DOUBLE),
            helper.make_node("Cast", ["a"], ["b"], to=TensorProto.FLOAT16),
            [],
            [2, 3, 4],
        ),
        {"Cast": 1, "Neg": 1},
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_pair_merges_and_outputs_match(kind: str) -> None:
    model, expected = CASES[kind]
    if kind == "cast_widening":
        model.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16  # type: ignore[attr-defined]
    result, modified = apply(model, MergeConsecutivePass())  # type: ignore[arg-type]
    cleaned(result)
    assert modified
    assert ops(result) == expected
    shape = [2, 1, 4] if kind == "squeeze_unsqueeze" else [2, 3, 4]
    assert_same_outputs(model, result, {"x": rand(*shape)}, rtol=0, atol=0)  # type: ignore[arg-type]


def test_narrowing_cast_pair_is_kept() -> None:
    model = _pair(
        helper.make_node("Cast", ["x"], ["a"], to=TensorProto.INT32),
        helper.make_node("Cast", ["a"], ["b"], to=TensorProto.FLOAT),
        [],
        [2, 3, 4],
    )
    result, modified = apply(model, MergeConsecutivePass())  # type: ignore[arg-type]
    assert not modified and ops(result)["Cast"] == 2
    x = rand(2, 3, 4) * 10
    assert np.array_equal(run(result, {"x": x})[0], -np.trunc(x))


def test_intermediate_with_another_reader_is_not_merged() -> None:
    model = make_model(
        [
            helper.make_node("Transpose", ["x"], ["a"], perm=[1, 0]),
            helper.make_node("Transpose", ["a"], ["b"], perm=[1, 0]),
            helper.make_node("Add", ["a", "a"], ["c"]),
        ],
        [tensor_info("x", F, [2, 3])],
        [tensor_info("b", F, [2, 3]), tensor_info("c", F, [3, 2])],
    )
    _, modified = apply(model, MergeConsecutivePass())
    assert not modified
