"""Run the official ONNX node conformance cases (generated from the installed onnx) through onnxforge.

``python -m onnxforge.verify.conformance [SUBSTRING ...]`` prints one line per failing case and a final
``N passed, N failed`` line. The comparison follows onnx's backend runner: ``assert_allclose`` at the
case's rtol/atol, exact equality for strings, and element-wise recursion into sequences and optionals.

Random cases. A case whose graph holds a random op (Bernoulli, Multinomial, RandomNormal[Like],
RandomUniform[Like], Dropout) and whose outputs differ from the expected ones passes if the statistical check
holds instead: onnx drew those values from its own generator (``np.random`` state, even when the node has a
seed), which no other engine reproduces. For every data set:

1. seeded nodes are reproducible: two runs of one session and a run of a second session agree exactly;
2. with the seeds removed, ``DRAWS`` (200) runs give outputs of the expected dtype and shape, with values in
   the distribution's support (0/1 for Bernoulli, [low, high] for RandomUniform, [0, C) for Multinomial, and
   0/1 wherever the reference only ever produced 0/1);
3. per element, the sample mean ``m`` and the mean squared deviation ``s = mean((x - mu)**2)`` match the
   expected mean ``mu`` and variance ``var`` within ``SIGMAS`` (6) standard errors:
   ``|m - mu| <= 6 * sqrt(max(var, var_ours) / N + var / N_ref) + atol + rtol * |mu|`` and the same for ``s``
   with the variance of the squared deviation ``mu4 - var**2``. The expectation is analytic where an output
   comes straight from a random op fed by graph inputs (Bernoulli ``p, p(1 - p)``; uniform ``(l + h) / 2,
   (h - l)**2 / 12``; normal ``mean, scale**2``; Multinomial's categorical over softmax(row)), with
   ``N_ref = inf``; otherwise it is estimated from ``N_ref = DRAWS`` runs of onnx's ReferenceEvaluator on the
   same seedless graph. (That matters for ``test_bernoulli*_expanded``: onnx's function body for Bernoulli is
   ``Cast(Greater(RandomUniformLike(p), p))``, which is 1 with probability ``1 - p``, not ``p``.)

At 6 sigma a correct kernel fails with probability ~1e-9 per element; a kernel that ignores its input, drops
a seed, or fixes its output fails at once.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class CaseResult:
    name: str
    ops: list[str]
    passed: bool
    reason: str = ""


def collect_cases(patterns: Iterable[str] = ()) -> list[Any]:
    """The node cases of the installed onnx, optionally only those whose name contains a pattern."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    wanted = list(patterns)
    return [c for c in cases if not wanted or any(p in c.name for p in wanted)]


def assert_similar(expected: Any, actual: Any, rtol: float, atol: float) -> None:
    """Raise AssertionError unless ``actual`` matches ``expected`` the way onnx's backend test checks."""
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            raise AssertionError(f"expected a sequence of {len(expected)}, got {type(actual).__name__}")
        for e, a in zip(expected, actual):
            assert_similar(e, a, rtol, atol)
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(actual) != set(expected):
            raise AssertionError(f"expected a map with keys {sorted(expected)}, got {actual!r}")
        for key in expected:
            assert_similar(expected[key], actual[key], rtol, atol)
        return
    if expected is None:
        if actual is not None:
            raise AssertionError(f"expected an empty optional, got {type(actual).__name__}")
        return
    expected = np.asarray(expected)
    if not isinstance(actual, np.ndarray):
        if actual is None:
            raise AssertionError("expected a tensor, got None")
        actual = np.asarray(actual)
    if expected.dtype != actual.dtype and not (expected.dtype.kind in "OUS" and actual.dtype.kind in "OUS"):
        raise AssertionError(f"dtype: expected {expected.dtype}, got {actual.dtype}")
    if expected.shape != actual.shape:
        raise AssertionError(f"shape: expected {expected.shape}, got {actual.shape}")
    if expected.dtype.kind in "OUS":
        if expected.tolist() != actual.tolist():
            raise AssertionError(f"values: expected {expected.tolist()!r}, got {actual.tolist()!r}")
        return
    if expected.dtype.kind in "fc" or expected.dtype.itemsize < 2 and expected.dtype.kind == "V":
        np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol)
        return
    if expected.dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected)
        return
    # bfloat16 / float8 / int4 from ml_dtypes compare as float64
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol)


def _normalize(value: Any) -> Any:
    import onnx

    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    return value


def run_case(case: Any) -> CaseResult:
    from onnxforge._errors import OnnxForgeError
    from onnxforge.runtime.session import InferenceSession

    ops = sorted({n.op_type for n in case.model.graph.node})
    try:
        session = InferenceSession(case.model.SerializeToString())
        input_names = [v.name for v in case.model.graph.input]
        output_names = [v.name for v in case.model.graph.output]
        for raw_inputs, raw_outputs in case.data_sets:
            # onnx hands some values over as TensorProto (float8, int4, ...), as its runner normalises too.
            inputs = [_normalize(value) for value in raw_inputs]
            outputs = [_normalize(value) for value in raw_outputs]
            feed = dict(zip(input_names, inputs))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                actual = session.run(output_names, feed)
            for name, expected, got in zip(output_names, outputs, actual):
                try:
                    assert_similar(expected, got, case.rtol, case.atol)
                except AssertionError as exc:
                    reason = f"output '{name}': {str(exc).strip().splitlines()[0:6]}"
                    if not _random_nodes(case.model):
                        return CaseResult(case.name, ops, False, reason)
                    failure = check_statistically(case)
                    if failure is not None:
                        return CaseResult(case.name, ops, False, f"{reason}; statistical check: {failure}")
                    return CaseResult(case.name, ops, True, "values differ; the statistical check holds")
    except OnnxForgeError as exc:
        return CaseResult(case.name, ops, False, f"{type(exc).__name__}: {str(exc)[:300]}")
    except Exception as exc:  # a crash is a failure too, with its type
        return CaseResult(case.name, ops, False, f"crash {type(exc).__name__}: {str(exc)[:300]}")
    return CaseResult(case.name, ops, True)


# --- the statistical check of random cases (see the module docstring) ------------------------------------

RANDOM_OPS = frozenset(
    {"Bernoulli", "Dropout", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"}
)
DRAWS = 200
SIGMAS = 6.0


@dataclass
class Expectation:
    """Per-element mean, variance and fourth central moment, from ``draws`` reference runs (inf: analytic)."""

    mean: np.ndarray
    var: np.ndarray
    fourth: np.ndarray
    draws: float = float("inf")
    support: str = ""  # "binary", "integer" or "" (none known)
    low: float = -np.inf
    high: float = np.inf


def _random_nodes(model: Any) -> list[Any]:
    return [n for n in model.graph.node if n.domain in ("", "ai.onnx") and n.op_type in RANDOM_OPS]


def _without_seeds(model: Any) -> Any:
    import onnx

    free = onnx.ModelProto()
    free.CopyFrom(model)
    for node in _random_nodes(free):
        kept = [a for a in node.attribute if a.name != "seed"]
        del node.attribute[:]
        node.attribute.extend(kept)
    return free


def _run(session: Any, names: list[str], feed: dict[str, Any]) -> list[Any]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return [np.asarray(v) for v in session.run(names, feed)]


def _moments(sample: np.ndarray, draws: float, **support: Any) -> Expectation:
    mean = sample.mean(axis=0)
    centred = sample - mean
    return Expectation(mean, (centred**2).mean(axis=0), (centred**4).mean(axis=0), draws, **support)


def _analytic(model: Any, output: str, feed: dict[str, Any], like: np.ndarray) -> Expectation | None:
    """The exact moments of ``output`` when a random op fed by graph inputs or initializers produces it."""
    import onnx

    node = next((n for n in _random_nodes(model) if output in n.output), None)
    if node is None or node.op_type == "Dropout":
        return None
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    values = [feed.get(name, constants.get(name)) for name in node.input]
    if any(v is None for v in values):
        return None
    full, dtype = np.ones(like.shape), like.dtype
    if node.op_type == "Bernoulli":
        p = np.asarray(values[0], dtype=np.float64) * full
        var = p * (1 - p)
        return Expectation(p, var, var * (1 - 3 * var), support="binary")
    if node.op_type.startswith("RandomUniform"):
        low, high = float(attrs.get("low", 0.0)), float(attrs.get("high", 1.0))
        width = high - low
        # rounding to the output dtype is monotone: the draws lie between the rounded bounds
        edges = np.array([low, high]).astype(dtype).astype(np.float64)
        moments = ((low + high) / 2 * full, width**2 / 12 * full, width**4 / 80 * full)
        return Expectation(*moments, low=float(edges[0]), high=float(edges[1]))
    if node.op_type.startswith("RandomNormal"):
        mean, scale = float(attrs.get("mean", 0.0)), float(attrs.get("scale", 1.0))
        return Expectation(mean * full, scale**2 * full, 3 * scale**4 * full)
    logits = np.asarray(values[0], dtype=np.float64)  # Multinomial: categorical over softmax(row), per sample
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    classes = np.arange(logits.shape[1])
    mean = probs @ classes
    deviation = classes - mean[:, None]
    var, fourth = (probs * deviation**2).sum(axis=1), (probs * deviation**4).sum(axis=1)
    return Expectation(
        mean[:, None] * full,
        var[:, None] * full,
        fourth[:, None] * full,
        support="integer",
        low=0,
        high=logits.shape[1] - 1,
    )


def _compare(name: str, sample: np.ndarray, want: Expectation, rtol: float, atol: float) -> str | None:
    """Why ``sample`` (draws stacked on axis 0, float64) does not fit ``want``, or None."""
    draws = sample.shape[0]
    if want.support == "binary" and not np.isin(sample, (0.0, 1.0)).all():
        return f"output '{name}' holds values other than 0 and 1"
    if want.support == "integer" and not (sample == np.round(sample)).all():
        return f"output '{name}' holds non-integer values"
    slack = atol + rtol * max(abs(want.low), abs(want.high)) if np.isfinite([want.low, want.high]).all() else 0.0
    if ((sample < want.low - slack) | (sample > want.high + slack)).any():
        return f"output '{name}' leaves its support [{want.low}, {want.high}]"
    mean = sample.mean(axis=0)
    var_ours = ((sample - mean) ** 2).mean(axis=0)
    fourth_ours = ((sample - mean) ** 4).mean(axis=0)
    floor = atol + rtol * np.abs(want.mean)
    square = ((sample - want.mean) ** 2).mean(axis=0)
    spread_sq = np.maximum(want.fourth - want.var**2, fourth_ours - var_ours**2)
    checks = (
        ("mean", mean, want.mean, np.maximum(want.var, var_ours) / draws + want.var / want.draws, floor),
        ("variance", square, want.var, spread_sq / draws + (want.fourth - want.var**2) / want.draws, floor**2),
    )
    for what, got, expected, variance, slack in checks:
        bound = SIGMAS * np.sqrt(np.maximum(variance, 0.0)) + slack
        bad = ~(np.abs(got - expected) <= bound)  # NaN fails too
        if bad.any():
            i = tuple(int(k) for k in np.argwhere(bad)[0])
            return (
                f"output '{name}'{list(i)}: {what} over {draws} draws is {got[i]:.6g}, expected {expected[i]:.6g} "
                f"+- {bound[i]:.3g}"
            )
    return None


def check_statistically(case: Any, draws: int = DRAWS) -> str | None:
    """Why ``case``'s random outputs do not follow their distribution (module docstring), or None."""
    from onnx.reference import ReferenceEvaluator

    from onnxforge.runtime.session import InferenceSession

    model = case.model
    seeded = any(a.name == "seed" for n in _random_nodes(model) for a in n.attribute)
    free = _without_seeds(model)
    ours = InferenceSession(free.SerializeToString())
    input_names = [v.name for v in model.graph.input]
    output_names = [v.name for v in model.graph.output]
    for raw_inputs, raw_outputs in case.data_sets:
        feed = dict(zip(input_names, (_normalize(v) for v in raw_inputs)))
        expected = [np.asarray(_normalize(v)) for v in raw_outputs]
        if seeded:
            session = InferenceSession(model.SerializeToString())
            runs = [_run(session, output_names, feed), _run(session, output_names, feed)]
            runs.append(_run(InferenceSession(model.SerializeToString()), output_names, feed))
            for index, name in enumerate(output_names):
                if not all(np.array_equal(runs[0][index], r[index], equal_nan=True) for r in runs[1:]):
                    return f"output '{name}' of a seeded node differs between runs"
        samples = [_run(ours, output_names, feed) for _ in range(draws)]
        reference: list[list[np.ndarray]] | None = None
        for index, (name, want) in enumerate(zip(output_names, expected)):
            for got in (s[index] for s in samples):
                if got.dtype != want.dtype or got.shape != want.shape:
                    return f"output '{name}': expected {want.dtype}{list(want.shape)}, got {got.dtype}{list(got.shape)}"
            sample = np.stack([s[index] for s in samples]).astype(np.float64)
            expectation = _analytic(model, name, feed, want)
            if expectation is None:
                if reference is None:
                    try:
                        evaluator = ReferenceEvaluator(free)
                        reference = [_run(evaluator, output_names, feed) for _ in range(draws)]
                    except Exception as exc:
                        return f"no analytic expectation for '{name}' and onnx's reference cannot run: {exc}"
                ref_sample = np.stack([r[index] for r in reference]).astype(np.float64)
                binary = "binary" if np.isin(ref_sample, (0.0, 1.0)).all() else ""
                expectation = _moments(ref_sample, draws, support=binary)
            failure = _compare(name, sample, expectation, case.rtol, case.atol)
            if failure is not None:
                return failure
    return None


def main(argv: list[str] | None = None) -> int:
    patterns = sys.argv[1:] if argv is None else argv
    results = [run_case(case) for case in collect_cases(patterns)]
    failed = [r for r in results if not r.passed]
    for result in failed:
        print(f"FAIL {result.name} [{','.join(result.ops)}]: {result.reason}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
