"""simplify(): fixed point, verification that fails closed, bisection of a bad pass, the report, files."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from onnxforge._errors import InvalidArgument
from onnxforge.passes import simplify, simplify_file
from onnxforge.passes.simplify import save_model

from .helpers import I64, F, assert_same_outputs, init, make_model, ops, rand, run, tensor_info


def _messy_model(batch: str | int = "N") -> onnx.ModelProto:
    """Conv -> BN -> Relu -> Identity -> Reshape(shape computed from Shape) -> Add(0), nodes unsorted."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Add", ["flat", "zero"], ["y"]),
        helper.make_node("Reshape", ["ident", "target"], ["flat"]),
        helper.make_node("Concat", ["batch", "minus_one"], ["target"], axis=0),
        helper.make_node("Slice", ["shape", "s0", "s1"], ["batch"]),
        helper.make_node("Shape", ["ident"], ["shape"]),
        helper.make_node("Identity", ["relu"], ["ident"]),
        helper.make_node("Relu", ["bn"], ["relu"]),
        helper.make_node("BatchNormalization", ["conv", "sc", "bi", "mu", "va"], ["bn"]),
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]),
    ]
    inits = [
        init("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
        init("sc", rng.uniform(0.5, 1.5, 4).astype(np.float32)),
        init("bi", rng.standard_normal(4).astype(np.float32)),
        init("mu", rng.standard_normal(4).astype(np.float32)),
        init("va", rng.uniform(0.5, 1.5, 4).astype(np.float32)),
        init("zero", np.zeros(1, dtype=np.float32)),
        init("minus_one", np.array([-1], dtype=np.int64)),
        init("s0", np.array([0], dtype=np.int64)),
        init("s1", np.array([1], dtype=np.int64)),
    ]
    return make_model(nodes, [tensor_info("x", F, [batch, 3, 5, 5])], [tensor_info("y", F, [batch, 100])], inits)


def test_unsorted_model_simplifies_and_matches() -> None:
    model = _messy_model()
    simplified, report = simplify(model)
    assert report.verified, report.verification
    assert ops(simplified) == {"Conv": 1, "Relu": 1, "Shape": 1, "Slice": 1, "Concat": 1, "Reshape": 1}
    assert report.nodes_before == 9 and report.nodes_after == 6
    assert {"fuse_conv_bn", "remove_noops"} <= set(report.changed_passes)
    onnx.checker.check_model(simplified)
    for batch in (1, 4):
        assert_same_outputs(model, simplified, {"x": rand(batch, 3, 5, 5)}, rtol=1e-4, atol=1e-4)


def test_overwrite_input_shapes_lets_the_shape_chain_fold() -> None:
    simplified, report = simplify(_messy_model(), overwrite_input_shapes={"x": [2, 3, 5, 5]})
    assert report.verified
    assert ops(simplified) == {"Conv": 1, "Relu": 1, "Reshape": 1}
    assert [d.dim_value for d in simplified.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 5, 5]
    with pytest.raises(InvalidArgument):
        simplify(_messy_model(), overwrite_input_shapes={"nope": [1]})


class _BreakAddPass(ir.passes.InPlacePass):
    """Deliberately wrong: turns every Add into a Sub."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        changed = False
        for node in model.graph:
            if node.op_type == "Add":
                node.op_type = "Sub"
                changed = True
        return ir.passes.PassResult(model, modified=changed)


def test_a_pass_that_changes_numbers_is_found_dropped_and_reported() -> None:
    model = make_model(
        [helper.make_node("Add", ["x", "b"], ["t"]), helper.make_node("Relu", ["t"], ["y"])],
        [tensor_info("x", F, ["N", 4])],
        [tensor_info("y", F, ["N", 4])],
        [init("b", np.arange(4, dtype=np.float32))],
    )
    simplified, report = simplify(model, extra_passes=[("break_add", _BreakAddPass())])
    assert report.verified
    assert set(report.dropped_passes) == {"break_add"}
    assert "differ" in report.dropped_passes["break_add"]
    assert "break_add" not in report.changed_passes
    assert "dropped break_add" in report.summary()
    assert ops(simplified) == {"Add": 1, "Relu": 1}
    assert_same_outputs(model, simplified, {"x": rand(3, 4)}, rtol=0, atol=0)


class _RaisingPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        model.graph.remove(model.graph[0], safe=False)  # leaves the graph half-edited before raising
        raise RuntimeError("boom")


def test_a_pass_that_raises_is_skipped_from_a_fresh_copy() -> None:
    model = _messy_model()
    simplified, report = simplify(model, extra_passes=[("raises", _RaisingPass())])
    assert report.verified and "raises" in report.failed_passes and "boom" in report.failed_passes["raises"]
    assert_same_outputs(model, simplified, {"x": rand(2, 3, 5, 5)}, rtol=1e-4, atol=1e-4)


def test_unverifiable_model_is_returned_unchanged() -> None:
    model = make_model(
        [
            helper.make_node("Add", ["c", "c"], ["d"]),
            helper.make_node("Frobnicate", ["x", "d"], ["y"], domain="custom.ops"),
        ],
        [tensor_info("x", F, [2])],
        [tensor_info("y", F, [2])],
        [init("c", np.ones(2, dtype=np.float32))],
    )
    model.opset_import.append(helper.make_opsetid("custom.ops", 1))
    simplified, report = simplify(model)
    assert not report.verified and "unchanged" in report.verification
    assert ops(simplified) == ops(model)


def test_skip_and_check_zero() -> None:
    simplified, report = simplify(_messy_model(), skip=["fuse_conv_bn"], check_n=0)
    assert not report.verified and "skipped on request" in report.verification
    assert ops(simplified)["BatchNormalization"] == 1


def test_ir3_initializers_as_inputs() -> None:
    model = make_model(
        [helper.make_node("Mul", ["w", "two"], ["w2"]), helper.make_node("Add", ["x", "w2"], ["y"])],
        [tensor_info("x", F, [3]), tensor_info("w", F, [3]), tensor_info("two", F, [])],
        [tensor_info("y", F, [3])],
        [init("w", np.arange(3, dtype=np.float32)), init("two", np.float32(2))],
        ir_version=3,
        opset=9,
    )
    simplified, report = simplify(model)
    assert report.verified and [i.name for i in simplified.graph.input] == ["x"] and simplified.ir_version >= 4
    assert ops(simplified) == {"Add": 1}
    kept, report = simplify(model, initializers_as_constants=False)
    assert report.verified and len(kept.graph.input) == 3 and ops(kept) == {"Mul": 1, "Add": 1}
    x = rand(3)
    np.testing.assert_array_equal(run(simplified, {"x": x})[0], run(model, {"x": x})[0])


def test_report_counts_and_sizes() -> None:
    _, report = simplify(_messy_model())
    assert report.before.ops["BatchNormalization"] == 1 and report.after.ops["BatchNormalization"] == 0
    assert ("BatchNormalization", 1, 0) in report.rows()
    assert report.before.initializers == 9 and report.after.initializers < 9
    assert report.before.size > 0 and report.after.size > 0
    assert report.rounds >= 1


def test_files_input_never_modified_and_same_path_refused(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    onnx.save(_messy_model(), source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    report = simplify_file(source, tmp_path / "out.onnx")
    assert report.verified and (tmp_path / "out.onnx").is_file()
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest
    with pytest.raises(InvalidArgument):
        simplify_file(source, source)
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest


def test_proto_input_is_not_modified() -> None:
    model = _messy_model()
    before = model.SerializeToString()
    simplify(model)
    assert model.SerializeToString() == before


def test_external_data_models_round_trip(tmp_path: Path) -> None:
    """Big models go out with external data; a model with external data simplifies from its file."""
    model = ir.serde.deserialize_model(_messy_model(2))
    save_model(model, tmp_path / "big.onnx", external_data_threshold=0)
    assert (tmp_path / "big.onnx.data").is_file()
    report = simplify_file(tmp_path / "big.onnx", tmp_path / "small.onnx")
    assert report.verified and report.after.nodes < report.before.nodes
    with pytest.raises(InvalidArgument):
        simplify_file(tmp_path / "big.onnx", tmp_path / "big.onnx.data")
    x = rand(2, 3, 5, 5)
    np.testing.assert_allclose(
        run(onnx.load(str(tmp_path / "small.onnx")), {"x": x})[0],
        run(_messy_model(2), {"x": x})[0],
        rtol=1e-4,
        atol=1e-4,
    )


def test_passes_work_without_onnxruntime_or_onnx_reference(tmp_path: Path) -> None:
    onnx.save(_messy_model(), tmp_path / "m.onnx")
    code = f"""
import sys
sys.modules["onnxruntime"] = None
sys.modules["onnx.reference"] = None
from onnxforge.passes import simplify
model, report = simplify({str(tmp_path / "m.onnx")!r})
assert report.verified, report.verification
assert "onnxruntime" not in sys.modules or sys.modules["onnxruntime"] is None
print(report.nodes_after)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"


def test_integer_and_bool_inputs_get_random_values() -> None:
    model = make_model(
        [
            helper.make_node("Gather", ["table", "idx"], ["g"], axis=0),
            helper.make_node("Cast", ["flag"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["g", "f"], ["y"]),
        ],
        [tensor_info("idx", I64, ["N"]), tensor_info("flag", TensorProto.BOOL, ["N", 1])],
        [tensor_info("y", F, ["N", 2])],
        [init("table", rand(3, 2))],
    )
    _, report = simplify(model)
    assert report.verified, report.verification


def test_output_elsewhere_does_not_depend_on_the_input_data_file(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    save_model(ir.serde.deserialize_model(_messy_model(2)), tmp_path / "in" / "m.onnx", external_data_threshold=0)
    report = simplify_file(tmp_path / "in" / "m.onnx", tmp_path / "out" / "m.onnx", skip=["fuse_conv_bn"])
    assert report.verified
    (tmp_path / "in" / "m.onnx.data").unlink()
    x = rand(2, 3, 5, 5)
    np.testing.assert_allclose(
        run(onnx.load(str(tmp_path / "out" / "m.onnx")), {"x": x})[0],
        run(_messy_model(2), {"x": x})[0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_local_functions_are_inlined_and_then_folded() -> None:
    function = helper.make_function(
        "local",
        "ScaleShift",
        ["t", "s"],
        ["u"],
        [helper.make_node("Mul", ["t", "s"], ["m"]), helper.make_node("Add", ["m", "s"], ["u"])],
        [helper.make_opsetid("", 17)],
    )
    model = make_model(
        [helper.make_node("ScaleShift", ["x", "k"], ["y"], domain="local")],
        [tensor_info("x", F, [3])],
        [tensor_info("y", F, [3])],
        [init("k", np.float32(2.0))],
    )
    model.opset_import.append(helper.make_opsetid("local", 1))
    model.functions.append(function)
    simplified, report = simplify(model)
    assert report.verified and "inline_functions" in report.changed_passes
    assert ops(simplified) == {"Mul": 1, "Add": 1} and not simplified.functions
    assert_same_outputs(model, simplified, {"x": rand(3)}, rtol=0, atol=0)


def test_shape_inference_leaves_sequence_values_alone() -> None:
    from onnxforge.passes.infer_shapes import InferShapesPass

    model = make_model(
        [
            helper.make_node("SequenceEmpty", [], ["seq"], dtype=TensorProto.FLOAT),
            helper.make_node("SequenceInsert", ["seq", "x"], ["seq2"]),
            helper.make_node("ConcatFromSequence", ["seq2"], ["y"], axis=0),
        ],
        [tensor_info("x", F, [2])],
        [tensor_info("y", F, None)],
    )
    ir_model = ir.serde.deserialize_model(model)
    InferShapesPass()(ir_model)
    seq = next(node for node in ir_model.graph if node.op_type == "SequenceEmpty").outputs[0]
    assert not isinstance(seq.type, ir.TensorType)
    assert_same_outputs(model, ir_model, {"x": rand(2)}, rtol=0, atol=0)
