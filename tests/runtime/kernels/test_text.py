"""String kernels (text.py): StringConcat, StringSplit, RegexFullMatch and TfIdfVectorizer against onnx's
reference evaluator, StringNormalizer (whose reference strips accents and splits on spaces) against
onnxruntime, plus the RE2 spellings Python's ``re`` lacks."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnxforge import InferenceSession, InvalidArgument

Feed = dict[str, np.ndarray]


def build(op: str, feed: Feed, attrs: dict[str, Any] | None = None, outputs: int = 1, opset: int = 20) -> bytes:
    node = helper.make_node(op, list(feed), [f"y{i}" for i in range(outputs)], **(attrs or {}))
    inputs = [
        helper.make_tensor_value_info(
            name, TensorProto.STRING if v.dtype.kind in "OU" else helper.np_dtype_to_tensor_dtype(v.dtype), None
        )
        for name, v in feed.items()
    ]
    graph_outputs = [helper.make_value_info(f"y{i}", onnx.TypeProto()) for i in range(outputs)]
    proto = helper.make_model(
        helper.make_graph([node], "g", inputs, graph_outputs), opset_imports=[helper.make_opsetid("", opset)]
    )
    proto.ir_version = 9
    return proto.SerializeToString()


def run(model: bytes, feed: Feed) -> list[np.ndarray]:
    return InferenceSession(model).run(None, feed)


def same(got: np.ndarray, want: Any) -> None:
    want = np.asarray(want)
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype.kind in "OU":
        assert got.dtype == object
        assert got.tolist() == want.astype(object).tolist()
    else:
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)


def check_reference(
    op: str, feed: Feed, attrs: dict[str, Any] | None = None, outputs: int = 1, opset: int = 20
) -> None:
    model = build(op, feed, attrs, outputs, opset)
    expected = ReferenceEvaluator(onnx.load_from_string(model)).run(None, feed)
    for got, want in zip(run(model, feed), expected):
        same(got, want)


def strings(values: list[str], shape: tuple[int, ...] | None = None) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape if shape is not None else (len(values),))


words = st.text(alphabet="ab-. \tÄß", max_size=8)


@settings(max_examples=20, deadline=None)
@given(st.lists(words, min_size=1, max_size=6), st.lists(words, min_size=1, max_size=3), st.booleans())
def test_string_concat_broadcasts_like_the_reference(left: list[str], right: list[str], scalar: bool) -> None:
    y = strings(right[:1], ()) if scalar else strings(right[:1] * len(left), (len(left), 1))
    check_reference("StringConcat", {"x": strings(left), "y": y})


@settings(max_examples=20, deadline=None)
@given(
    st.lists(words, max_size=6),
    st.sampled_from([None, "", "-", ".", "a-"]),
    st.none() | st.integers(0, 3),
)
def test_string_split_matches_the_reference(values: list[str], delimiter: str | None, maxsplit: int | None) -> None:
    attrs = {k: v for k, v in {"delimiter": delimiter, "maxsplit": maxsplit}.items() if v is not None}
    check_reference("StringSplit", {"x": strings(values)}, attrs, outputs=2)


def test_string_split_keeps_the_input_rank_and_counts() -> None:
    model = build("StringSplit", {"x": strings(["a b", "c", "", "d e f"], (2, 2))}, {}, outputs=2)
    pieces, counts = run(model, {"x": strings(["a b", "c", "", "d e f"], (2, 2))})
    same(counts, np.array([[2, 1], [0, 3]], dtype=np.int64))
    same(pieces, strings(["a", "b", "", "c", "", "", "", "", "", "d", "e", "f"], (2, 2, 3)))


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from([r"a+b?", r"[a-c]*\d{2}", r"(ab|ba)+", r".*@.*\.com", r"\w+ \w+", ""]),
    st.lists(st.text(alphabet="ab1 c@.om", max_size=8), max_size=6),
)
def test_regex_full_match_matches_the_reference(pattern: str, values: list[str]) -> None:
    check_reference("RegexFullMatch", {"x": strings(values, (len(values), 1))}, {"pattern": pattern})


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"[[:digit:]]+", "0123", True),
        (r"[[:alpha:]_]+", "ab_C", True),
        (r"[[:alpha:]]+", "ab1", False),
        (r"\Qa.b\E", "a.b", True),
        (r"\Qa.b\E", "axb", False),
        (r"ab\z", "ab", True),
    ],
)
def test_regex_full_match_translates_re2_spellings(pattern: str, text: str, expected: bool) -> None:
    feed = {"x": strings([text])}
    same(run(build("RegexFullMatch", feed, {"pattern": pattern}), feed)[0], np.array([expected]))


def test_regex_full_match_rejects_a_bad_pattern() -> None:
    feed = {"x": strings(["a"])}
    with pytest.raises(InvalidArgument, match="pattern"):
        run(build("RegexFullMatch", feed, {"pattern": "(a"}), feed)


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.sampled_from(["Mon", "mon", "TUE", "wed", "x y", ""]), min_size=1, max_size=6),
    st.lists(st.sampled_from(["mon", "Tue", "x y", "zzz"]), max_size=3),
    st.sampled_from(["NONE", "LOWER", "UPPER"]),
    st.booleans(),
    st.booleans(),
)
def test_string_normalizer_matches_onnxruntime(
    values: list[str], stopwords: list[str], action: str, sensitive: bool, row: bool
) -> None:
    x = strings(values, (1, len(values)) if row else None)
    # onnxruntime needs an installed locale; "C" is always there (and maps ASCII only, hence ASCII words)
    attrs: dict[str, Any] = {"case_change_action": action, "is_case_sensitive": int(sensitive), "locale": "C"}
    if stopwords:
        attrs["stopwords"] = stopwords
    model = build("StringNormalizer", {"x": x}, attrs, opset=10)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    same(run(model, {"x": x})[0], want)


def test_string_normalizer_maps_unicode_case_one_character_at_a_time() -> None:
    x = strings(["Straße", "ÉTÉ", "İx"])
    upper = run(build("StringNormalizer", {"x": x}, {"case_change_action": "UPPER"}, opset=10), {"x": x})[0]
    same(upper, strings(["STRAßE", "ÉTÉ", "İX"]))
    lower = run(
        build("StringNormalizer", {"x": x}, {"case_change_action": "LOWER", "stopwords": ["été"]}, opset=10), {"x": x}
    )[0]
    same(lower, strings(["straße", "İx"]))


def test_string_normalizer_returns_one_empty_string_when_everything_is_dropped() -> None:
    for shape, out_shape in (((2,), (1,)), ((1, 2), (1, 1))):
        x = strings(["a", "A"], shape)
        model = build("StringNormalizer", {"x": x}, {"stopwords": ["a"]}, opset=10)
        same(run(model, {"x": x})[0], strings([""], out_shape))


def tfidf_attrs(pool: list[Any], grams: int, mode: str, lengths: tuple[int, int], skip: int) -> dict[str, Any]:
    """Four unigrams then four bigrams, mapped to shuffled output coordinates, with distinct weights."""
    return {
        "pool_strings" if isinstance(pool[0], str) else "pool_int64s": pool,
        "ngram_counts": [0, 4],
        "ngram_indexes": [int(i) for i in np.random.default_rng(0).permutation(grams)],
        "mode": mode,
        "min_gram_length": lengths[0],
        "max_gram_length": lengths[1],
        "max_skip_count": skip,
        "weights": [0.5 + i for i in range(grams)],
    }


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=12),
    st.integers(1, 3),
    st.sampled_from(["TF", "IDF", "TFIDF"]),
    st.sampled_from([(1, 1), (1, 2), (2, 2)]),
    st.integers(0, 3),
    st.booleans(),
    st.booleans(),
)
def test_tfidf_vectorizer_matches_the_reference(
    tokens: list[int], rows: int, mode: str, lengths: tuple[int, int], skip: int, as_strings: bool, batched: bool
) -> None:
    unigrams, bigrams = [0, 2, 3, 5], [2, 3, 3, 2, 0, 0, 5, 1]
    pool: list[Any] = unigrams + bigrams
    if as_strings:
        pool = [f"t{v}" for v in pool]
    attrs = tfidf_attrs(pool, 8, mode, lengths, skip)
    data = np.array([tokens] * rows, dtype=np.int64)
    data[1:] = np.roll(data[1:], 1, axis=1)
    x = strings([f"t{v}" for v in data.reshape(-1)], data.shape) if as_strings else data
    if not batched:
        x = x[0]
    check_reference("TfIdfVectorizer", {"x": x}, attrs, opset=9)


def test_tfidf_vectorizer_counts_skip_grams_like_the_spec_example() -> None:
    x = np.array([94, 17, 36, 12, 28], dtype=np.int32)
    attrs = {
        "pool_int64s": [94, 12, 17, 28],
        "ngram_counts": [0, 0],
        "ngram_indexes": [0, 1],
        "mode": "TF",
        "min_gram_length": 2,
        "max_gram_length": 2,
        "max_skip_count": 2,
    }
    same(run(build("TfIdfVectorizer", {"x": x}, attrs, opset=9), {"x": x})[0], np.array([1, 1], np.float32))
