"""FoldShapesPass: Shape/Size and Gather/Slice of a Shape become constants where the dims are static."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxforge.passes.constant_folding import FoldConstantsPass
from onnxforge.passes.shape_folding import FoldShapesPass

from .helpers import I64, F, apply, assert_same_outputs, cleaned, init, make_model, ops, rand, tensor_info


def _reshape_by_own_dims(batch: str | int) -> object:
    """y = Reshape(x, concat(shape(x)[0:1], shape(x)[1] * shape(x)[2])): flatten all but the batch dim."""
    return make_model(
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Slice", ["s", "zero", "one"], ["batch"]),
            helper.make_node("Gather", ["s", "i1"], ["d1"], axis=0),
            helper.make_node("Gather", ["s", "i2"], ["d2"], axis=0),
            helper.make_node("Mul", ["d1", "d2"], ["flat"]),
            helper.make_node("Unsqueeze", ["flat", "axes0"], ["flat1"]),
            helper.make_node("Concat", ["batch", "flat1"], ["target"], axis=0),
            helper.make_node("Reshape", ["x", "target"], ["y"]),
        ],
        [tensor_info("x", F, [batch, 3, 4])],
        [tensor_info("y", F, [batch, 12])],
        [
            init("zero", np.array([0], dtype=np.int64)),
            init("one", np.array([1], dtype=np.int64)),
            init("i1", np.array(1, dtype=np.int64)),
            init("i2", np.array(2, dtype=np.int64)),
            init("axes0", np.array([0], dtype=np.int64)),
        ],
    )


def test_static_shape_chain_folds_to_a_constant_reshape() -> None:
    model = _reshape_by_own_dims(2)
    result, modified = apply(model, FoldShapesPass(), FoldConstantsPass())
    cleaned(result)
    assert modified
    assert ops(result) == {"Reshape": 1}
    assert_same_outputs(model, result, {"x": rand(2, 3, 4)}, rtol=0, atol=0)


def test_symbolic_batch_keeps_its_shape_query_but_static_dims_fold() -> None:
    model = _reshape_by_own_dims("N")
    result, modified = apply(model, FoldShapesPass(), FoldConstantsPass())
    cleaned(result)
    assert modified
    remaining = ops(result)
    assert remaining["Gather"] == 0 and remaining["Mul"] == 0 and remaining["Shape"] == 1
    for batch in (1, 5):
        assert_same_outputs(model, result, {"x": rand(batch, 3, 4)}, rtol=0, atol=0)


def test_size_and_shape_with_start_end() -> None:
    model = make_model(
        [
            helper.make_node("Size", ["x"], ["n"]),
            helper.make_node("Shape", ["x"], ["tail"], start=1),
            helper.make_node("ReduceProd", ["tail"], ["p"], keepdims=0),
            helper.make_node("Add", ["n", "p"], ["y"]),
        ],
        [tensor_info("x", F, [2, 3, 4])],
        [tensor_info("y", I64, [])],
    )
    result, modified = apply(model, FoldShapesPass(), FoldConstantsPass())
    cleaned(result)
    assert modified and ops(result) == {}
    assert_same_outputs(model, result, {"x": rand(2, 3, 4)}, rtol=0, atol=0)
