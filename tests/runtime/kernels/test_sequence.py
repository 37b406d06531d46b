"""Sequence and optional ops through the session, against Python list semantics, NumPy and onnx's reference
evaluator; sequences are fed and returned as Python lists, empty optionals as None."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument

F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def tensor(name: str, elem: int = F, shape: list[Any] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def seq(name: str, elem: int = F) -> onnx.ValueInfoProto:
    return helper.make_value_info(name, helper.make_sequence_type_proto(helper.make_tensor_type_proto(elem, None)))


def optional(name: str, inner: onnx.TypeProto) -> onnx.ValueInfoProto:
    return helper.make_value_info(name, helper.make_optional_type_proto(inner))


def model(nodes: list[onnx.NodeProto], inputs: list[Any], outputs: list[Any], opset: int = 17) -> onnx.ModelProto:
    proto = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", opset)]
    )
    proto.ir_version = 8
    return proto


def run(proto: onnx.ModelProto, feed: dict[str, Any]) -> list[Any]:
    return InferenceSession(proto.SerializeToString()).run(None, feed)


def items(count: int) -> list[np.ndarray]:
    return [np.full((2,), i, dtype=np.float32) for i in range(count)]


def as_values(sequence: list[np.ndarray]) -> list[float]:
    return [float(t[0]) for t in sequence]


@settings(max_examples=15, deadline=None)
@given(length=st.integers(0, 5), position=st.integers(-7, 7) | st.none())
def test_insert_matches_list_semantics(length: int, position: int | None) -> None:
    inputs = ["s", "t"] if position is None else ["s", "t", "p"]
    proto = model(
        [helper.make_node("SequenceInsert", inputs, ["out"]), helper.make_node("SequenceLength", ["out"], ["n"])],
        [seq("s"), tensor("t", F, [2])] + ([] if position is None else [tensor("p", I64, [])]),
        [seq("out"), tensor("n", I64, [])],
    )
    feed: dict[str, Any] = {"s": items(length), "t": np.full((2,), 99, dtype=np.float32)}
    if position is not None:
        feed["p"] = np.array(position, dtype=np.int64)
    if position is not None and not -length <= position <= length:
        with pytest.raises(InvalidArgument, match="out of range"):
            run(proto, feed)
        return
    out, n = run(proto, feed)
    expected = as_values(feed["s"])
    index = length if position is None else position + length if position < 0 else position
    expected.insert(index, 99.0)
    assert as_values(out) == expected
    assert n.dtype == np.int64 and n.shape == () and int(n) == length + 1
    assert len(feed["s"]) == length  # the input list is not mutated


@settings(max_examples=15, deadline=None)
@given(length=st.integers(1, 5), position=st.integers(-6, 6) | st.none())
def test_erase_and_at_match_list_semantics(length: int, position: int | None) -> None:
    erase_inputs = ["s"] if position is None else ["s", "p"]
    proto = model(
        [
            helper.make_node("SequenceErase", erase_inputs, ["erased"]),
            helper.make_node("SequenceAt", ["s", "p" if position is not None else "zero"], ["at"]),
            helper.make_node("Constant", [], ["zero"], value_int=0),
        ],
        [seq("s")] + ([] if position is None else [tensor("p", I64, [])]),
        [seq("erased"), tensor("at", F, [2])],
    )
    feed: dict[str, Any] = {"s": items(length)}
    if position is not None:
        feed["p"] = np.array(position, dtype=np.int64)
    if position is not None and not -length <= position < length:
        with pytest.raises(InvalidArgument, match="out of range"):
            run(proto, feed)
        return
    erased, at = run(proto, feed)
    expected = as_values(feed["s"])
    del expected[-1 if position is None else position]
    assert as_values(erased) == expected
    np.testing.assert_array_equal(at, feed["s"][0 if position is None else position])


def test_empty_construct_and_length() -> None:
    proto = model(
        [
            helper.make_node("SequenceEmpty", [], ["empty"], dtype=TensorProto.INT64),
            helper.make_node("SequenceLength", ["empty"], ["n0"]),
            helper.make_node("SequenceConstruct", ["a", "b", "a"], ["built"]),
            helper.make_node("SequenceLength", ["built"], ["n3"]),
        ],
        [tensor("a", I64, [2]), tensor("b", I64, [3])],
        [seq("empty", I64), tensor("n0", I64, []), seq("built", I64), tensor("n3", I64, [])],
    )
    a, b = np.array([1, 2]), np.array([3, 4, 5])
    empty, n0, built, n3 = run(proto, {"a": a, "b": b})
    assert empty == [] and int(n0) == 0 and int(n3) == 3 and n3.dtype == np.int64
    assert [t.tolist() for t in built] == [[1, 2], [3, 4, 5], [1, 2]]


@st.composite
def split_cases(draw: st.DrawFn) -> dict[str, Any]:
    rank = draw(st.integers(1, 3))
    shape = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    axis = draw(st.integers(-rank, rank - 1))
    dim = shape[axis]
    kind = draw(st.sampled_from(["none", "scalar", "list"]))
    split: np.ndarray | None = None
    if kind == "scalar":
        split = np.array(draw(st.integers(1, dim + 1)), dtype=np.int64)
    elif kind == "list":
        cuts = sorted(draw(st.sets(st.integers(1, dim - 1), max_size=dim - 1))) if dim > 1 else []
        split = np.diff([0, *cuts, dim]).astype(np.int64)
    return {"shape": shape, "axis": axis, "split": split, "keepdims": draw(st.integers(0, 1))}


@settings(max_examples=15, deadline=None)
@given(split_cases())
def test_split_to_sequence_matches_reference(case: dict[str, Any]) -> None:
    inputs = ["x"] if case["split"] is None else ["x", "split"]
    proto = model(
        [helper.make_node("SplitToSequence", inputs, ["parts"], axis=case["axis"], keepdims=case["keepdims"])],
        [tensor("x", F, case["shape"])] + ([] if case["split"] is None else [tensor("split", I64, None)]),
        [seq("parts")],
        opset=24,
    )
    feed: dict[str, Any] = {"x": np.arange(np.prod(case["shape"]), dtype=np.float32).reshape(case["shape"])}
    if case["split"] is not None:
        feed["split"] = case["split"]
    (expected,) = ReferenceEvaluator(proto).run(None, feed)
    (got,) = run(proto, feed)
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        assert have.dtype == np.float32 and have.shape == want.shape
        np.testing.assert_array_equal(have, want)


@settings(max_examples=15, deadline=None)
@given(count=st.integers(1, 4), new_axis=st.integers(0, 1), axis=st.integers(-3, 2))
def test_concat_from_sequence(count: int, new_axis: int, axis: int) -> None:
    parts = [np.arange(6, dtype=np.int64).reshape(2, 3) + 10 * i for i in range(count)]
    rank = 2 + new_axis
    proto = model(
        [helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=axis, new_axis=new_axis)],
        [seq("s", I64)],
        [tensor("y", I64, None)],
    )
    if not -rank <= axis < rank:
        with pytest.raises(Exception, match="axis"):  # out-of-range axes are rejected at load or run time
            run(proto, {"s": parts})
        return
    (y,) = run(proto, {"s": parts})
    expected = np.stack(parts, axis=axis) if new_axis else np.concatenate(parts, axis=axis)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, expected)


def test_sequence_map_with_sequence_tensor_and_outer_scope_inputs() -> None:
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["elem"], ["o_elem"]),
            helper.make_node("Identity", ["other"], ["o_other"]),
            helper.make_node("Identity", ["fixed"], ["o_fixed"]),
            helper.make_node("Identity", ["outer"], ["o_outer"]),
        ],
        "body",
        [tensor("elem"), tensor("other"), tensor("fixed")],
        [tensor("o_elem"), tensor("o_other"), tensor("o_fixed"), tensor("o_outer")],
    )
    proto = model(
        [helper.make_node("SequenceMap", ["s", "t", "k"], ["m_elem", "m_other", "m_fixed", "m_outer"], body=body)],
        [seq("s"), seq("t"), tensor("k", F, [1]), tensor("outer", F, [2])],
        [seq("m_elem"), seq("m_other"), seq("m_fixed"), seq("m_outer")],
    )
    s, t = items(3), [np.array([i, -i], dtype=np.float32) for i in range(3)]
    k, outer = np.array([4.0], np.float32), np.array([7.0, 8.0], np.float32)
    m_elem, m_other, m_fixed, m_outer = run(proto, {"s": s, "t": t, "k": k, "outer": outer})
    assert as_values(m_elem) == [0.0, 1.0, 2.0]
    assert [x.tolist() for x in m_other] == [x.tolist() for x in t]
    assert [x.tolist() for x in m_fixed] == [[4.0]] * 3
    assert [x.tolist() for x in m_outer] == [[7.0, 8.0]] * 3


def test_sequence_map_rejects_mismatched_lengths() -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["o"])], "body", [tensor("a"), tensor("b")], [tensor("o")]
    )
    proto = model([helper.make_node("SequenceMap", ["s", "t"], ["m"], body=body)], [seq("s"), seq("t")], [seq("m")])
    with pytest.raises(InvalidArgument, match="sequence of 2"):
        run(proto, {"s": items(3), "t": items(2)})


@pytest.mark.parametrize("opset", [15, 18])
def test_optional_wraps_and_unwraps(opset: int) -> None:
    tensor_type = helper.make_tensor_type_proto(F, None)
    proto = model(
        [
            helper.make_node("Optional", ["x"], ["full"]),
            helper.make_node("Optional", [], ["empty"], type=tensor_type),
            helper.make_node("OptionalHasElement", ["full"], ["has_full"]),
            helper.make_node("OptionalHasElement", ["empty"], ["has_empty"]),
            helper.make_node("OptionalGetElement", ["full"], ["got"]),
        ],
        [tensor("x", F, [2])],
        [optional("empty", tensor_type), tensor("has_full", BOOL, []), tensor("has_empty", BOOL, []), tensor("got")],
        opset=opset,
    )
    x = np.array([1.0, 2.0], np.float32)
    empty, has_full, has_empty, got = run(proto, {"x": x})
    assert empty is None
    assert has_full.dtype == np.bool_ and has_full.shape == () and bool(has_full) and not bool(has_empty)
    np.testing.assert_array_equal(got, x)


def test_optional_ops_on_plain_values_from_opset_18() -> None:
    proto = model(
        [
            helper.make_node("OptionalHasElement", ["s"], ["has_seq"]),
            helper.make_node("OptionalHasElement", [], ["has_nothing"]),
            helper.make_node("OptionalGetElement", ["s"], ["same_seq"]),
            helper.make_node("OptionalGetElement", ["x"], ["same_x"]),
        ],
        [seq("s"), tensor("x", F, [2])],
        [tensor("has_seq", BOOL, []), tensor("has_nothing", BOOL, []), seq("same_seq"), tensor("same_x")],
        opset=18,
    )
    x = np.array([1.0, 2.0], np.float32)
    has_seq, has_nothing, same_seq, same_x = run(proto, {"s": items(2), "x": x})
    assert bool(has_seq) and not bool(has_nothing)
    assert as_values(same_seq) == [0.0, 1.0]
    np.testing.assert_array_equal(same_x, x)


def test_optional_get_element_of_an_empty_optional_fails() -> None:
    tensor_type = helper.make_tensor_type_proto(F, None)
    proto = model(
        [helper.make_node("OptionalGetElement", ["o"], ["y"])],
        [optional("o", tensor_type)],
        [tensor("y")],
        opset=18,
    )
    with pytest.raises(InvalidArgument, match="empty"):
        run(proto, {"o": None})
