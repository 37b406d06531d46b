"""Simplifying never crashes on the ONNX node-conformance models: each result is verified or left unchanged.

Every case of the installed onnx is simplified with its first data set as the check input (plus one
random set). A verified result must also reproduce the case's expected outputs on that data set, when the
original does. About 20 s for ~1900 models.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest

from onnxforge.passes import simplify
from onnxforge.verify.conformance import assert_similar, collect_cases

from .helpers import run


def _normalize(value: object) -> object:
    import onnx

    return onnx.numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value


@pytest.mark.filterwarnings("ignore")
def test_every_node_model_simplifies_to_a_verified_or_unchanged_model() -> None:
    cases = collect_cases()
    assert len(cases) > 1000
    problems: list[str] = []
    tally: Counter[str] = Counter()
    for case in cases:
        names = [v.name for v in case.model.graph.input]
        inputs, outputs = case.data_sets[0]
        feed = dict(zip(names, (_normalize(v) for v in inputs)))
        try:
            simplified, report = simplify(case.model, check_n=1, inputs=feed)
        except Exception as exc:  # the point of the test: nothing may escape
            problems.append(f"{case.name}: crashed: {type(exc).__name__}: {exc}")
            continue
        if not report.verified:
            tally["unchanged"] += 1
            if report.nodes_after != report.nodes_before or len(simplified.graph.node) != len(case.model.graph.node):
                problems.append(f"{case.name}: not verified but changed")
            continue
        tally["verified"] += 1
        tally["smaller"] += report.nodes_after < report.nodes_before
        if report.nodes_after == report.nodes_before and not report.changed_passes:
            continue
        expected = [_normalize(v) for v in outputs]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                original = run(case.model, feed)
                assert_similar(expected, original, case.rtol, case.atol)
            except Exception:
                continue  # the engine itself does not pass this case; the verifier compared against it anyway
            try:
                assert_similar(expected, run(simplified, feed), case.rtol, case.atol)
            except Exception as exc:
                problems.append(f"{case.name}: simplified model misses the expected outputs: {exc}")
    assert not problems, "\n".join(problems[:20])
    assert tally["verified"] > 1500 and tally["smaller"] > 300, tally
