"""RemoveNoOpsPass: each no-op kind is removed, numbers unchanged; look-alikes that are not no-ops stay."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxforge.passes.noop_removal import RemoveNoOpsPass

from .helpers import F, apply, assert_same_outputs, init, make_model, ops, rand, tensor_info

I64 = np.int64


def _one_node_model(
    op: str, extra_inputs: list[str], inits: list[object], out_shape: list[int], **attrs: object
) -> object:
    nodes = [helper.make_node(op, ["x", *extra_inputs], ["t"], **attrs), helper.make_node("Relu", ["t"], ["y"])]
    return make_model(nodes, [tensor_info("x", F, [2, 3, 4])], [tensor_info("y", F, out_shape)], inits)  # type: ignore[arg-type]


NOOPS = {
    "identity": ("Identity", [], [], {}),
    "dropout": ("Dropout", [], [], {}),
    "cast_same": ("Cast", [], [], {"to": TensorProto.FLOAT}),
    "reshape_same": ("Reshape", ["s"], [init("s", np.array([0, 3, -1], dtype=I64))], {}),
    "transpose_identity": ("Transpose", [], [], {"perm": [0, 1, 2]}),
    "pad_zero": ("Pad", ["p"], [init("p", np.zeros(6, dtype=I64))], {}),
    "slice_full": (
        "Slice",
        ["st", "en"],
        [init("st", np.array([0, 0], dtype=I64)), init("en", np.array([2**62, 3], dtype=I64))],
        {},
    ),
    "expand_ones": ("Expand", ["s"], [init("s", np.array([1, 1], dtype=I64))], {}),
    "add_zero": ("Add", ["z"], [init("z", np.zeros((3, 1), dtype=np.float32))], {}),
    "sub_zero": ("Sub", ["z"], [init("z", np.zeros((), dtype=np.float32))], {}),
    "mul_one": ("Mul", ["o"], [init("o", np.ones(4, dtype=np.float32))], {}),
    "div_one": ("Div", ["o"], [init("o", np.ones((1, 1, 1), dtype=np.float32))], {}),
    "concat_single": ("Concat", [], [], {"axis": 0}),
    "split_single": ("Split", [], [], {"axis": 0, "num_outputs": 1}),
    "tile_ones": ("Tile", ["r"], [init("r", np.ones(3, dtype=I64))], {}),
}


@pytest.mark.parametrize("kind", sorted(NOOPS))
def test_noop_is_removed_and_outputs_match(kind: str) -> None:
    op, extra, inits, attrs = NOOPS[kind]
    model = make_model(
        [helper.make_node(op, ["x", *extra], ["t"], **attrs), helper.make_node("Relu", ["t"], ["y"])],
        [tensor_info("x", F, [2, 3, 4])],
        [tensor_info("y", F, [2, 3, 4])],
        inits,
        opset=18,
    )
    result, modified = apply(model, RemoveNoOpsPass())
    assert modified, kind
    assert ops(result) == {"Relu": 1}
    assert_same_outputs(model, result, {"x": rand(2, 3, 4)}, rtol=0, atol=0)


NOT_NOOPS = {
    "add_zero_broadcast_grows": ("Add", ["z"], [init("z", np.zeros((5, 1, 1, 1), dtype=np.float32))], [5, 2, 3, 4]),
    "mul_two": ("Mul", ["o"], [init("o", np.full(4, 2.0, dtype=np.float32))], [2, 3, 4]),
    "transpose_swap": ("Transpose", [], [], [3, 2, 4]),
    "slice_partial": (
        "Slice",
        ["st", "en"],
        [init("st", np.array([0], dtype=I64)), init("en", np.array([1], dtype=I64))],
        [1, 3, 4],
    ),
    "expand_grows": ("Expand", ["s"], [init("s", np.array([2, 2, 3, 4], dtype=I64))], [2, 2, 3, 4]),
}


@pytest.mark.parametrize("kind", sorted(NOT_NOOPS))
def test_lookalikes_stay(kind: str) -> None:
    op, extra, inits, out_shape = NOT_NOOPS[kind]
    attrs = {"perm": [1, 0, 2]} if op == "Transpose" else {}
    model = make_model(
        [helper.make_node(op, ["x", *extra], ["t"], **attrs), helper.make_node("Relu", ["t"], ["y"])],
        [tensor_info("x", F, [2, 3, 4])],
        [tensor_info("y", F, out_shape)],
        inits,
    )
    result, modified = apply(model, RemoveNoOpsPass())
    assert not modified, kind
    assert ops(result)[op] == 1


def test_noop_feeding_a_graph_output_keeps_the_output_name() -> None:
    model = make_model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"])],
        [tensor_info("x", F, [2])],
        [tensor_info("y", F, [2])],
    )
    result, modified = apply(model, RemoveNoOpsPass())
    assert modified and ops(result) == {"Relu": 1}
    assert [v.name for v in result.graph.outputs] == ["y"]


def test_identity_between_input_and_output_or_two_outputs_stays() -> None:
    model = make_model(
        [
            helper.make_node("Identity", ["x"], ["y"]),
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Identity", ["r"], ["z"]),
        ],
        [tensor_info("x", F, [2])],
        [tensor_info("y", F, [2]), tensor_info("r", F, [2]), tensor_info("z", F, [2])],
    )
    result, modified = apply(model, RemoveNoOpsPass())
    assert not modified
    assert [v.name for v in result.graph.outputs] == ["y", "r", "z"]
    assert_same_outputs(model, result, {"x": rand(2)})
