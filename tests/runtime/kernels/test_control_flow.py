"""If / Loop / Scan through the session: branch choice, outer-scope reads at two levels of nesting, loop-carried
sequences and optionals, early exit, zero-trip loops and both Scan opset generations.

Bodies use only Identity and the sequence ops, so these tests do not depend on the elementwise kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from onnxforge import InferenceSession, InvalidArgument

F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def tensor(name: str, elem: int = F, shape: list[Any] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def seq(name: str, elem: int = F) -> onnx.ValueInfoProto:
    return helper.make_value_info(name, helper.make_sequence_type_proto(helper.make_tensor_type_proto(elem, None)))


def optional_tensor(name: str, elem: int = F) -> onnx.ValueInfoProto:
    return helper.make_value_info(name, helper.make_optional_type_proto(helper.make_tensor_type_proto(elem, None)))


def session(nodes: list[onnx.NodeProto], inputs: list[Any], outputs: list[Any], opset: int = 17) -> InferenceSession:
    model = helper.make_model(
        helper.make_graph(nodes, "main", inputs, outputs), opset_imports=[helper.make_opsetid("", opset)]
    )
    model.ir_version = 8
    return InferenceSession(model.SerializeToString())


def identity_graph(
    name: str, source: str, output: str, value_info: onnx.ValueInfoProto | None = None
) -> onnx.GraphProto:
    return helper.make_graph(
        [helper.make_node("Identity", [source], [output])], name, [], [value_info or tensor(output)]
    )


@pytest.mark.parametrize("flag", [True, False])
def test_if_picks_a_branch_reading_the_outer_scope(flag: bool) -> None:
    then_branch = identity_graph("then", "x", "then_out")
    else_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["else_out"], value_floats=[7.0, 8.0])], "else", [], [tensor("else_out")]
    )
    sess = session(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        [tensor("c", BOOL, []), tensor("x", F, [2])],
        [tensor("y")],
    )
    x = np.array([1.0, 2.0], dtype=np.float32)
    (y,) = sess.run(None, {"c": np.array(flag), "x": x})
    np.testing.assert_array_equal(y, x if flag else [7.0, 8.0])
    assert y.dtype == np.float32


@pytest.mark.parametrize("flag", [True, False])
def test_if_returns_sequences_and_optionals(flag: bool) -> None:
    then_branch = helper.make_graph(
        [
            helper.make_node("SequenceConstruct", ["x", "x"], ["s_then"]),
            helper.make_node("Optional", ["x"], ["o_then"]),
        ],
        "then",
        [],
        [seq("s_then"), optional_tensor("o_then")],
    )
    else_branch = helper.make_graph(
        [
            helper.make_node("SequenceEmpty", [], ["s_else"], dtype=F),
            helper.make_node("Optional", [], ["o_else"], type=helper.make_tensor_type_proto(F, None)),
        ],
        "else",
        [],
        [seq("s_else"), optional_tensor("o_else")],
    )
    sess = session(
        [helper.make_node("If", ["c"], ["s", "o"], then_branch=then_branch, else_branch=else_branch)],
        [tensor("c", BOOL, [1]), tensor("x", F, [2])],
        [seq("s"), optional_tensor("o")],
        opset=18,
    )
    x = np.array([1.0, 2.0], dtype=np.float32)
    s, o = sess.run(None, {"c": np.array([flag]), "x": x})
    assert isinstance(s, list) and len(s) == (2 if flag else 0)
    if flag:
        np.testing.assert_array_equal(o, x)
    else:
        assert o is None


def loop_with_nested_if() -> InferenceSession:
    """Loop body i -> If(flag) then data_seq[i] (grandparent + parent scope) else v (parent scope)."""
    then_branch = helper.make_graph(
        [helper.make_node("SequenceAt", ["data_seq", "i"], ["picked"])], "then", [], [tensor("picked")]
    )
    else_branch = identity_graph("else", "v_in", "kept")
    body = helper.make_graph(
        [
            helper.make_node("If", ["flag"], ["chosen"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["chosen"], ["v_out"]),
            helper.make_node("Identity", ["chosen"], ["scan_out"]),
        ],
        "body",
        [tensor("i", I64, []), tensor("cond_in", BOOL, []), tensor("v_in", F, [3])],
        [tensor("cond_out", BOOL, []), tensor("v_out", F, [3]), tensor("scan_out", F, [3])],
    )
    return session(
        [
            helper.make_node("SplitToSequence", ["data"], ["data_seq"], axis=0, keepdims=0),
            helper.make_node("Loop", ["M", "", "v0"], ["v_final", "scanned"], body=body),
        ],
        [tensor("data", F, [5, 3]), tensor("flag", BOOL, []), tensor("M", I64, []), tensor("v0", F, [3])],
        [tensor("v_final", F, [3]), tensor("scanned", F, None)],
    )


@settings(max_examples=15, deadline=None)
@given(flag=st.booleans(), trips=st.integers(1, 5))
def test_nested_if_inside_loop_reads_outer_scope(flag: bool, trips: int) -> None:
    data = np.arange(15, dtype=np.float32).reshape(5, 3)
    v0 = np.full(3, -1.0, dtype=np.float32)
    v_final, scanned = loop_with_nested_if().run(
        None, {"data": data, "flag": np.array(flag), "M": np.array(trips, dtype=np.int64), "v0": v0}
    )
    expected = data[:trips] if flag else np.tile(v0, (trips, 1))
    np.testing.assert_array_equal(scanned, expected)
    np.testing.assert_array_equal(v_final, expected[-1])
    assert scanned.dtype == np.float32 and scanned.shape == (trips, 3)


def test_zero_trip_loop_returns_initial_values_and_empty_scans() -> None:
    v0 = np.ones(3, dtype=np.float32)
    feed = {"data": np.zeros((5, 3), np.float32), "flag": np.array(True), "M": np.array(0, np.int64), "v0": v0}
    v_final, scanned = loop_with_nested_if().run(None, feed)
    np.testing.assert_array_equal(v_final, v0)
    # No iteration produced an element: the body's declared [3] gives the rest of the shape, as in onnxruntime.
    assert scanned.shape == (0, 3) and scanned.dtype == np.float32


# Undeclared, onnx's shape inference still finds [2] for the body's output.
@pytest.mark.parametrize(("declared", "axis", "expected"), [([2], 0, (0, 2)), ([2], 1, (2, 0)), (None, 0, (0, 2))])
def test_zero_length_scan_shapes_its_outputs_from_the_body(
    declared: list[int] | None, axis: int, expected: tuple[int, ...]
) -> None:
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y"])],
        "body",
        [tensor("s_in", F, [2]), tensor("x", F, [2])],
        [tensor("s_out", F, [2]), tensor("y", F, declared)],
    )
    node = helper.make_node("Scan", ["init", "xs"], ["s", "ys"], body=body, num_scan_inputs=1, scan_output_axes=[axis])
    sess = session([node], [tensor("init", F, [2]), tensor("xs", F, ["n", 2])], [tensor("s"), tensor("ys")], opset=16)
    init = np.array([1.0, 2.0], np.float32)
    state, ys = sess.run(None, {"init": init, "xs": np.zeros((0, 2), np.float32)})
    np.testing.assert_array_equal(state, init)
    assert ys.shape == expected and ys.dtype == np.float32


def test_loop_carries_a_sequence_and_scans_the_iteration_number() -> None:
    body = helper.make_graph(
        [
            helper.make_node("SequenceInsert", ["seq_in", "x"], ["seq_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["i"], ["i_out"]),
        ],
        "body",
        [tensor("i", I64, []), tensor("cond_in", BOOL, []), seq("seq_in")],
        [tensor("cond_out", BOOL, []), seq("seq_out"), tensor("i_out", I64, [])],
    )
    sess = session(
        [
            helper.make_node("SequenceEmpty", [], ["empty"], dtype=F),
            helper.make_node("Loop", ["M", "", "empty"], ["collected", "iterations"], body=body),
        ],
        [tensor("M", I64, []), tensor("x", F, [2])],
        [seq("collected"), tensor("iterations", I64, None)],
        opset=13,
    )
    x = np.array([3.0, 4.0], dtype=np.float32)
    collected, iterations = sess.run(None, {"M": np.array(4, dtype=np.int64), "x": x})
    assert isinstance(collected, list) and len(collected) == 4
    for item in collected:
        np.testing.assert_array_equal(item, x)
    np.testing.assert_array_equal(iterations, np.arange(4))
    assert iterations.dtype == np.int64


@settings(max_examples=15, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=1, max_size=6), start=st.booleans())
def test_loop_stops_when_the_body_clears_cond(flags: list[bool], start: bool) -> None:
    """No trip count: cond alone ends the loop; iteration i reports flags[i] as the next cond."""
    flags = [*flags, False]  # always terminates within range
    body = helper.make_graph(
        [
            helper.make_node("SequenceAt", ["flag_seq", "i"], ["cond_out"]),
            helper.make_node("Identity", ["i"], ["i_out"]),
        ],
        "body",
        [tensor("i", I64, []), tensor("cond_in", BOOL, [])],
        [tensor("cond_out", BOOL, []), tensor("i_out", I64, [])],
    )
    sess = session(
        [
            helper.make_node("SplitToSequence", ["flags"], ["flag_seq"], keepdims=0),
            helper.make_node("Loop", ["", "start"], ["iterations"], body=body),
        ],
        [tensor("flags", BOOL, [len(flags)]), tensor("start", BOOL, [])],
        [tensor("iterations", I64, None)],
    )
    (iterations,) = sess.run(None, {"flags": np.array(flags), "start": np.array(start)})
    expected = flags.index(False) + 1 if start else 0
    assert iterations.shape == (expected,) and iterations.dtype == np.int64
    np.testing.assert_array_equal(iterations, np.arange(expected))


def test_loop_carries_an_empty_optional() -> None:
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["opt_in"], ["opt_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [tensor("i", I64, []), tensor("cond_in", BOOL, []), optional_tensor("opt_in")],
        [tensor("cond_out", BOOL, []), optional_tensor("opt_out")],
    )
    sess = session(
        [
            helper.make_node("Optional", [], ["nothing"], type=helper.make_tensor_type_proto(F, None)),
            helper.make_node("Loop", ["M", "", "nothing"], ["still_nothing"], body=body),
            helper.make_node("OptionalHasElement", ["still_nothing"], ["has"]),
        ],
        [tensor("M", I64, [])],
        [tensor("has", BOOL, [])],
        opset=18,
    )
    (has,) = sess.run(None, {"M": np.array(3, dtype=np.int64)})
    assert has.dtype == np.bool_ and has.shape == () and not has


@st.composite
def scan_cases(draw: st.DrawFn) -> dict[str, Any]:
    rank = draw(st.integers(1, 3))
    shape = draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    return {
        "shape": shape,
        "in_axis": draw(st.integers(-rank, rank - 1)),
        "in_direction": draw(st.integers(0, 1)),
        "out_axis": draw(st.integers(-rank, rank - 1)),
        "out_direction": draw(st.integers(0, 1)),
    }


@settings(max_examples=15, deadline=None)
@given(scan_cases())
def test_scan_9_axes_and_directions(case: dict[str, Any]) -> None:
    """Two scan inputs (the same tensor, walked both ways); the body keeps the last forward slice as state,
    emits both slices and an outer-scope value as scan outputs."""
    x = np.arange(np.prod(case["shape"]), dtype=np.float32).reshape(case["shape"])
    fronted = np.moveaxis(x, case["in_axis"], 0)
    forward = fronted[::-1] if case["in_direction"] else fronted
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["a"], ["state_out"]),
            helper.make_node("Identity", ["a"], ["out_a"]),
            helper.make_node("Identity", ["b"], ["out_b"]),
            helper.make_node("Identity", ["w"], ["out_w"]),
        ],
        "body",
        [tensor("state_in", F, None), tensor("a", F, None), tensor("b", F, None)],
        [tensor("state_out", F, None), tensor("out_a", F, None), tensor("out_b", F, None), tensor("out_w", F, None)],
    )
    node = helper.make_node(
        "Scan",
        ["init", "x", "x"],
        ["state", "ys_a", "ys_b", "ys_w"],
        body=body,
        num_scan_inputs=2,
        scan_input_axes=[case["in_axis"], case["in_axis"]],
        scan_input_directions=[case["in_direction"], 1 - case["in_direction"]],
        scan_output_axes=[case["out_axis"]] * 3,
        scan_output_directions=[case["out_direction"]] * 3,
    )
    sess = session(
        [node],
        [tensor("init", F, None), tensor("x", F, None), tensor("w", F, None)],
        [tensor(n, F, None) for n in ("state", "ys_a", "ys_b", "ys_w")],
        opset=16,
    )
    w = np.full(fronted.shape[1:], 5.0, dtype=np.float32)
    state, ys_a, ys_b, ys_w = sess.run(None, {"init": np.zeros(fronted.shape[1:], np.float32), "x": x, "w": w})

    def accumulate(items: np.ndarray) -> np.ndarray:
        ordered = list(items)[::-1] if case["out_direction"] else list(items)
        return np.stack(ordered, axis=case["out_axis"])

    np.testing.assert_array_equal(state, forward[-1])
    np.testing.assert_array_equal(ys_a, accumulate(forward))
    np.testing.assert_array_equal(ys_b, accumulate(forward[::-1]))
    np.testing.assert_array_equal(ys_w, np.stack([w] * len(forward), axis=case["out_axis"]))
    assert ys_a.dtype == np.float32


def test_scan_8_batches_with_sequence_lens_and_reverse() -> None:
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["fwd"], ["state_out"]),
            helper.make_node("Identity", ["fwd"], ["out_fwd"]),
            helper.make_node("Identity", ["bwd"], ["out_bwd"]),
        ],
        "body",
        [tensor("state_in", F, [2]), tensor("fwd", F, [2]), tensor("bwd", F, [2])],
        [tensor("state_out", F, [2]), tensor("out_fwd", F, [2]), tensor("out_bwd", F, [2])],
    )
    node = helper.make_node(
        "Scan", ["lens", "init", "x", "x"], ["state", "ys_f", "ys_b"], body=body, num_scan_inputs=2, directions=[0, 1]
    )
    sess = session(
        [node],
        [tensor("lens", I64, [2]), tensor("init", F, [2, 2]), tensor("x", F, [2, 3, 2])],
        [tensor(n, F, None) for n in ("state", "ys_f", "ys_b")],
        opset=8,
    )
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    init = np.full((2, 2), -1.0, dtype=np.float32)
    state, ys_f, ys_b = sess.run(None, {"lens": np.array([3, 1]), "init": init, "x": x})
    np.testing.assert_array_equal(state, [x[0, 2], x[1, 0]])
    np.testing.assert_array_equal(ys_f[0], x[0])
    np.testing.assert_array_equal(ys_f[1], [x[1, 0], [0, 0], [0, 0]])  # padded past length 1
    np.testing.assert_array_equal(ys_b[0], x[0, ::-1])
    np.testing.assert_array_equal(ys_b[1], [x[1, 0], [0, 0], [0, 0]])  # reverse walks the valid part only
    assert ys_f.shape == (2, 3, 2) and ys_f.dtype == np.float32

    (state_all,) = sess.run(["state"], {"lens": np.array([3, 3]), "init": init, "x": x})
    np.testing.assert_array_equal(state_all, x[:, 2])


def test_if_cond_must_be_a_single_element() -> None:
    branch = identity_graph("b", "x", "out")
    sess = session(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=identity_graph("e", "x", "out2"))],
        [tensor("c", BOOL, None), tensor("x", F, [2])],
        [tensor("y")],
    )
    with pytest.raises(InvalidArgument, match="exactly one element"):
        sess.run(None, {"c": np.array([True, False]), "x": np.zeros(2, np.float32)})


class RecordingBody:
    """Stands in for a sub-plan: echoes its inputs and records them."""

    def __init__(self, num_inputs: int) -> None:
        self.input_slots = list(range(num_inputs))
        self.output_slots = list(range(num_inputs))
        self.output_shapes: list[tuple[int, ...] | None] = [None] * num_inputs
        self.seen: list[list[Any]] = []

    def run(self, inputs: list[Any], outer: Any = None) -> list[Any]:
        self.seen.append(list(inputs))
        return list(inputs)


@pytest.mark.parametrize("opset", [8, 9])
def test_scan_hands_the_body_0d_arrays_not_numpy_scalars(opset: int) -> None:
    from onnxforge.runtime.kernels.control_flow import Scan, Scan_8

    body = RecordingBody(2)
    if opset == 8:
        state, out = Scan_8(None, np.zeros(2, np.float32), np.ones((2, 3), np.float32), body=body, num_scan_inputs=1)
    else:
        state, out = Scan(np.zeros((), np.float32), np.arange(3, dtype=np.float32), body=body, num_scan_inputs=1)
    assert all(type(value) is np.ndarray for inputs in body.seen for value in inputs)
    assert type(state) is np.ndarray and type(out) is np.ndarray
