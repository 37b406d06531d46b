"""Elementwise chains against constants (runtime/fusion_chain.py): one step, the unfused plan's exact bits."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnxforge import InferenceSession
from onnxforge._errors import OnnxForgeError
from onnxforge.runtime.plan import Plan
from onnxforge.runtime.plan_builder import PlanBuilder

RNG = np.random.default_rng(11)


def _chain_model(ops: list[str], const_shape: tuple[int, ...], dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """x -> Mul(x, c0) -> op1(., c1) -> ... ; ops name the links, 'r' prefix puts the constant first."""
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    nodes, inits, current = [], [], "x"
    for i, op in enumerate(["Mul", *ops]):
        out = f"t{i}"
        if op == "Relu":
            nodes.append(helper.make_node("Relu", [current], [out], name=f"n{i}"))
        else:
            name = f"c{i}"
            value = RNG.uniform(0.5, 1.5, const_shape).astype(np_dtype)
            inits.append(numpy_helper.from_array(value, name))
            operands = [name, current] if op.startswith("r") else [current, name]
            nodes.append(helper.make_node(op.removeprefix("r"), operands, [out], name=f"n{i}"))
        current = out
    nodes.append(helper.make_node("Identity", [current], ["y"], name="out"))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", dtype, None)],
        [helper.make_tensor_value_info("y", dtype, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _plan(model: onnx.ModelProto, optimize: bool) -> Plan:
    irm = ir.serde.deserialize_model(model)
    return PlanBuilder(irm.opset_imports, optimize=optimize).build(irm.graph)


OPS = ["Add", "rSub", "rDiv", "Relu", "Div", "Mul", "Sub"]


@pytest.mark.parametrize("const_shape", [(), (4,), (3, 1), (1, 3, 4)])
def test_a_chain_is_one_step_with_the_unfused_bits(const_shape: tuple[int, ...]) -> None:
    model = _chain_model(OPS, const_shape)
    fused, plain = _plan(model, optimize=True), _plan(model, optimize=False)
    assert len(plain.steps) == len(OPS) + 2
    assert len(fused.steps) <= 2  # the chain, and at most the Identity
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    (got,), (want,) = fused.run([x]), plain.run([x])
    assert got.dtype == np.float32 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, x)  # and the input was not written
    np.testing.assert_array_equal(x, x.copy())


def test_a_constant_wider_than_the_running_value_falls_back_to_the_steps() -> None:
    # The constant (3, 4) broadcasts the running (4,) value up: no buffer of the result's shape exists yet.
    model = _chain_model(["Add", "Mul"], (3, 4))
    fused, plain = _plan(model, optimize=True), _plan(model, optimize=False)
    x = RNG.standard_normal(4).astype(np.float32)
    (got,), (want,) = fused.run([x]), plain.run([x])
    assert got.shape == (3, 4)
    np.testing.assert_array_equal(got, want)
    # The same plan then takes the fused path for an input of the full shape.
    x2 = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(fused.run([x2])[0], plain.run([x2])[0])


def test_one_element_constants_keep_numpy_broadcasting_in_either_operand_order() -> None:
    # The fused loop runs a shape-(1,) constant as 0-d and Add/Mul with the running value first: on a 0-d
    # input the chain's result must still be shape (1,) (the fallback), on a (2, 3) one shape (2, 3), with the
    # unfused bits, whichever side of Add/Mul the constant is on.
    model = _chain_model(["rAdd", "Mul", "rMul", "Add", "rSub"], (1,))
    fused, plain = _plan(model, optimize=True), _plan(model, optimize=False)
    for x in (np.array(1.5, np.float32), RNG.standard_normal((2, 3)).astype(np.float32)):
        (got,), (want,) = fused.run([x]), plain.run([x])
        assert got.shape == want.shape == np.broadcast_shapes(x.shape, (1,)) and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_float64_chains_fuse_and_a_dtype_mismatch_is_still_reported() -> None:
    model = _chain_model(["Add", "Div"], (4,), TensorProto.DOUBLE)
    fused, plain = _plan(model, optimize=True), _plan(model, optimize=False)
    x = RNG.standard_normal((3, 4))
    np.testing.assert_array_equal(fused.run([x])[0], plain.run([x])[0])
    session = InferenceSession(model.SerializeToString())
    with pytest.raises(OnnxForgeError, match="tensor\\(double\\)"):
        session.run(None, {"x": x.astype(np.float32)})


def test_a_value_read_twice_ends_the_chain() -> None:
    model = _chain_model(["Add", "Mul", "Sub"], (4,))
    # t1 (the Add's result) is also a graph output: it must not be overwritten by the later links.
    model.graph.output.append(helper.make_tensor_value_info("t1", TensorProto.FLOAT, None))
    fused, plain = _plan(model, optimize=True), _plan(model, optimize=False)
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    for got, want in zip(fused.run([x]), plain.run([x])):
        np.testing.assert_array_equal(got, want)


def test_errors_and_profiles_name_every_node_of_the_chain() -> None:
    model = _chain_model(["Add", "Mul"], (4,))
    fused = _plan(model, optimize=True)
    names = {fused.infos[0].name, *(info.name for info in fused.infos[0].fused)}
    assert {"n0", "n1", "n2"} <= names


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(["Add", "Sub", "Mul", "Div", "rAdd", "rSub", "rMul", "rDiv", "Relu"]), min_size=1, max_size=8
    ),
    st.sampled_from([(), (1,), (4,), (3, 1), (3, 4), (1, 3, 4), (2, 3, 4)]),
    st.sampled_from([(4,), (3, 4), (2, 3, 4), (5, 2, 3, 4)]),
    st.sampled_from([TensorProto.FLOAT, TensorProto.DOUBLE]),
)
def test_random_chains_give_the_unfused_values(
    ops: list[str], const_shape: tuple[int, ...], x_shape: tuple[int, ...], dtype: int
) -> None:
    model = _chain_model(ops, const_shape, dtype)
    fused, plain = _plan(model, optimize=True), _plan(model, optimize=False)
    x = RNG.uniform(0.5, 2.0, x_shape).astype(helper.tensor_dtype_to_np_dtype(dtype))
    try:
        want = plain.run([x])
    except OnnxForgeError as error:  # shapes that do not broadcast fail alike
        with pytest.raises(type(error)):
            fused.run([x])
        return
    got = fused.run([x])
    assert got[0].dtype == want[0].dtype and got[0].shape == want[0].shape
    np.testing.assert_array_equal(got[0], want[0])
