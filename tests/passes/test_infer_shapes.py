"""apply_inferred: onnx's inferred types land on the right onnx-ir values, shared shapes stay safe to share."""

from __future__ import annotations

import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from onnxforge.passes.infer_shapes import apply_inferred
from tests.passes.helpers import I64, F, init, make_model, tensor_info


def _inferred(model: onnx.ModelProto) -> onnx.GraphProto:
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True).graph


def _values(model: ir.Model) -> dict[str, ir.Value]:
    return {out.name: out for node in model.graph for out in node.outputs}


def test_each_value_gets_its_own_inferred_type_and_dims() -> None:
    model = make_model(
        [
            helper.make_node("Add", ["x", "x"], ["a"]),
            helper.make_node("Mul", ["a", "x"], ["b"]),
            helper.make_node("Cast", ["b"], ["c"], to=TensorProto.INT64),  # same dims, another type
            helper.make_node("Reshape", ["b", "shape"], ["r"]),
            helper.make_node("Relu", ["r"], ["y"]),
        ],
        [tensor_info("x", F, [2, 3])],
        [tensor_info("y", F, None), tensor_info("c", I64, None)],
        [init("shape", [3, 2])],
    )
    ir_model = ir.serde.deserialize_model(model)

    assert apply_inferred(ir_model, _inferred(model))

    values = _values(ir_model)
    got = {name: (value.dtype, None if value.shape is None else tuple(value.shape)) for name, value in values.items()}
    assert got == {
        "a": (ir.DataType.FLOAT, (2, 3)),
        "b": (ir.DataType.FLOAT, (2, 3)),
        "c": (ir.DataType.INT64, (2, 3)),
        "r": (ir.DataType.FLOAT, (3, 2)),
        "y": (ir.DataType.FLOAT, (3, 2)),
    }
    # Equal dims share one shape, frozen so that an edit through one value cannot change the others.
    assert values["a"].shape is values["b"].shape
    with pytest.raises(TypeError):
        values["a"].shape[0] = 5  # type: ignore[index]
    assert tuple(values["b"].shape) == (2, 3)
    # A second application finds nothing new.
    assert not apply_inferred(ir_model, _inferred(model))


def test_symbolic_dims_and_declared_signatures() -> None:
    model = make_model(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Neg", ["h"], ["y"])],
        [tensor_info("x", F, ["batch", 4])],
        [tensor_info("y", F, ["n", 4])],
    )
    ir_model = ir.serde.deserialize_model(model)

    apply_inferred(ir_model, _inferred(model))

    values = _values(ir_model)
    assert [getattr(d, "value", d) for d in values["h"].shape] == ["batch", 4]
    # The graph output keeps the caller's declared dims, not inference's.
    assert [getattr(d, "value", d) for d in values["y"].shape] == ["n", 4]


def test_subgraph_values_get_their_types() -> None:
    body = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["inner"]), helper.make_node("Relu", ["inner"], ["branch_out"])],
        "then",
        [],
        [tensor_info("branch_out", F, None)],
    )
    other = helper.make_graph(
        [helper.make_node("Abs", ["x"], ["else_out"])], "else", [], [tensor_info("else_out", F, None)]
    )
    model = make_model(
        [helper.make_node("If", ["cond"], ["y"], then_branch=body, else_branch=other)],
        [tensor_info("cond", TensorProto.BOOL, []), tensor_info("x", F, [5])],
        [tensor_info("y", F, None)],
    )
    ir_model = ir.serde.deserialize_model(model)

    apply_inferred(ir_model, _inferred(model))

    then_graph = next(iter(ir_model.graph)).attributes["then_branch"].as_graph()
    inner = next(iter(then_graph)).outputs[0]
    assert inner.dtype == ir.DataType.FLOAT and tuple(inner.shape) == (5,)
