"""without_map_types: the engine's copy of a model loses its map-typed declarations, nothing else."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from onnxforge.ir.map_types import has_map, without_map_types

F = TensorProto.FLOAT
MAP = helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(F, []))
SEQ_OF_MAPS = helper.make_sequence_type_proto(MAP)


def _model(opsets: list[onnx.OperatorSetIdProto]) -> onnx.ModelProto:
    branch = helper.make_graph(
        [helper.make_node("Identity", ["m"], ["inner"])], "branch", [], [helper.make_value_info("inner", SEQ_OF_MAPS)]
    )
    graph = helper.make_graph(
        [
            helper.make_node("If", ["cond"], ["picked"], then_branch=branch, else_branch=branch),
            helper.make_node("Relu", ["x"], ["y"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_value_info("m", SEQ_OF_MAPS),
            helper.make_tensor_value_info("x", F, [2]),
        ],
        [helper.make_value_info("picked", SEQ_OF_MAPS), helper.make_tensor_value_info("y", F, [2])],
    )
    return helper.make_model(graph, opset_imports=opsets)


def _types(graph: onnx.GraphProto) -> dict[str, str | None]:
    return {info.name: info.type.WhichOneof("value") for info in list(graph.input) + list(graph.output)}


def test_map_typed_declarations_lose_their_type_in_a_copy() -> None:
    model = _model([helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])

    engine = without_map_types(model)

    assert engine is not model
    assert _types(engine.graph) == {
        "cond": "tensor_type",
        "m": None,
        "x": "tensor_type",
        "picked": None,
        "y": "tensor_type",
    }
    branch = engine.graph.node[0].attribute[0].g
    assert _types(branch) == {"inner": None}
    # The caller's model is unchanged.
    assert _types(model.graph) == {
        "cond": "tensor_type",
        "m": "sequence_type",
        "x": "tensor_type",
        "picked": "sequence_type",
        "y": "tensor_type",
    }


def test_a_map_graph_input_is_found_without_the_ml_domain() -> None:
    model = _model([helper.make_opsetid("", 17)])
    assert _types(without_map_types(model).graph)["m"] is None


def test_a_model_without_maps_comes_back_as_is() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", F, [2])],
        [helper.make_tensor_value_info("y", F, [2])],
    )
    for opsets in ([helper.make_opsetid("", 17)], [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]):
        model = helper.make_model(graph, opset_imports=opsets)
        assert without_map_types(model) is model


def test_has_map_looks_inside_sequences_and_optionals() -> None:
    assert has_map(MAP) and has_map(SEQ_OF_MAPS)
    assert has_map(helper.make_optional_type_proto(MAP))
    assert not has_map(helper.make_sequence_type_proto(helper.make_tensor_type_proto(F, [])))
    assert not has_map(helper.make_tensor_type_proto(F, [2]))


def test_the_graph_tools_refuse_map_types_with_a_typed_error(tmp_path) -> None:
    from onnxforge import NotImplemented as OnnxForgeNotImplemented
    from onnxforge.ir.load import load_model
    from onnxforge.passes.simplify import simplify, simplify_file

    model = _model([helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    path = tmp_path / "maps.onnx"
    path.write_bytes(model.SerializeToString())
    named = (
        r"map-typed values 'm' \(seq\(map\(string,tensor\(float\)\)\)\), 'picked' .*, 'inner' .*InferenceSession runs"
    )
    with pytest.raises(
        OnnxForgeNotImplemented, match=r"Load model from .*maps\.onnx: cannot load a model with " + named
    ):
        load_model(str(path))
    with pytest.raises(OnnxForgeNotImplemented, match="cannot simplify a model with " + named):
        simplify(model)
    with pytest.raises(OnnxForgeNotImplemented, match="cannot simplify"):
        simplify_file(path, tmp_path / "out.onnx")
