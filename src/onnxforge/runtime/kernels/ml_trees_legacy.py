"""ai.onnx.ml TreeEnsembleRegressor and TreeEnsembleClassifier (versions 1 and 3), on ``ml_trees.Forest``.

Nodes are addressed by (tree id, node id); a leaf's weights are the ``target_*`` / ``class_*`` entries naming
it (entries naming an interior node are ignored, as onnxruntime does). The root of each tree is its first
listed node. Thresholds are float32 unless the input is float64 and the thresholds came as a double tensor.

The regressor aggregates as ``ml_trees`` describes and adds ``base_values``. The classifier sums class
weights. With more than two classes the label is the arg-max over the classes some leaf (or a base value)
scored, and the scores go through the post-transform. With two classes onnxruntime's binary conventions
apply: when every weight goes to one class (``binary``), the positive class wins if its score exceeds 0.5
(all weights non-negative) or 0, and the lone score ``s`` becomes ``[1 - s, s]``, or ``[-s, s]``
(``[logistic(-s), logistic(s)]`` under LOGISTIC) with mixed signs; otherwise the positive class wins when its
score is positive. Two base values make the scores ``[-(b1 + s0), b1 + s0]`` when class 1 was scored. A class
no leaf scored reads as 0 (a base value counts as a score only with more than two classes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels.ml import DOMAIN, post_transform
from onnxforge.runtime.kernels.ml_trees import AGGREGATES, MODES, TRANSFORMS, Forest, features, regress
from onnxforge.runtime.registry import kernel


def _legacy_forest(a: dict[str, Any], prefix: str, double: bool) -> Forest:
    """Compile the (tree id, node id) encoding of TreeEnsembleRegressor / TreeEnsembleClassifier."""
    tree_ids = list(a.get("nodes_treeids") or [])
    node_ids = list(a.get("nodes_nodeids") or [])
    modes = np.array([MODES.get(m, -2) for m in (a.get("nodes_modes") or [])], dtype=np.int64)
    if (modes == -2).any() or (modes == 6).any():
        raise InvalidArgument(f"tree ensemble: unknown node mode in {a.get('nodes_modes')}")
    values = a.get("nodes_values_as_tensor")
    values = np.asarray(values if values is not None else a.get("nodes_values") or [], dtype=np.float64)
    if not double:
        values = values.astype(np.float32).astype(np.float64)
    n = len(tree_ids)
    columns = [
        node_ids,
        modes,
        values,
        a.get("nodes_featureids") or [],
        a.get("nodes_truenodeids") or [],
        a.get("nodes_falsenodeids") or [],
    ]
    if any(len(c) != n for c in columns):
        raise InvalidArgument("tree ensemble: the nodes_* attributes differ in length")
    where = {(t, i): k for k, (t, i) in enumerate(zip(tree_ids, node_ids))}
    if len(where) != n:
        raise InvalidArgument("tree ensemble: a (tree, node) id appears twice")

    def resolve(children: Sequence[int]) -> np.ndarray:
        out = [where.get((t, c), -1) if m >= 0 else k for k, (t, c, m) in enumerate(zip(tree_ids, children, modes))]
        return np.asarray(out, dtype=np.int64)

    missing = np.zeros(n, bool)
    tracks = list(a.get("nodes_missing_value_tracks_true") or [])[:n]
    missing[: len(tracks)] = np.asarray(tracks, dtype=bool)
    roots = np.asarray([k for k, t in enumerate(tree_ids) if k == 0 or tree_ids[k - 1] != t], dtype=np.intp)
    w_trees, w_nodes = a.get(f"{prefix}_treeids") or [], a.get(f"{prefix}_nodeids") or []
    w_ids = a.get(f"{prefix}_ids") or []
    w_values = a.get(f"{prefix}_weights_as_tensor")
    w_values = np.asarray(w_values if w_values is not None else a.get(f"{prefix}_weights") or [], np.float64)
    if not (len(w_trees) == len(w_nodes) == len(w_ids) == len(w_values)):
        raise InvalidArgument(f"tree ensemble: the {prefix}_* attributes differ in length")
    at = np.asarray([where.get(key, -1) for key in zip(w_trees, w_nodes)], dtype=np.int64)
    if (at < 0).any():
        raise InvalidArgument(f"tree ensemble: a {prefix}_* entry names a node that does not exist")
    keep = modes[at] < 0 if len(at) else np.zeros(0, bool)  # weights on interior nodes are ignored
    return Forest(
        np.asarray(columns[3]),
        values,
        modes,
        resolve(columns[4]),
        resolve(columns[5]),
        missing,
        roots,
        at[keep],
        np.asarray(w_ids, dtype=np.int64)[keep],
        w_values[keep],
    )


def _base(a: dict[str, Any]) -> np.ndarray:
    base = a.get("base_values_as_tensor")
    return np.asarray(base if base is not None else a.get("base_values") or [], dtype=np.float64).reshape(-1)


def _prepare_regressor(constants: list[Any], **a: Any) -> Callable[[np.ndarray], np.ndarray]:
    how, transform = a.get("aggregate_function", "SUM"), a.get("post_transform", "NONE")
    if how not in AGGREGATES or transform not in TRANSFORMS:
        raise InvalidArgument(f"TreeEnsembleRegressor: bad aggregate_function {how!r} or post_transform {transform!r}")
    forests = {False: _legacy_forest(a, "target", False)}
    width, base = int(a.get("n_targets") or 1), _base(a)

    def run(X: np.ndarray) -> np.ndarray:
        double = X.dtype == np.float64
        if double not in forests:  # float64 inputs compare against the thresholds' full precision
            forests[double] = _legacy_forest(a, "target", double)
        dtype = np.float64 if double else np.float32
        return regress(forests[double], features(X, dtype), width, how, transform, base, dtype).astype(np.float32)

    return run


@kernel("TreeEnsembleRegressor", since=1, domain=DOMAIN, prepare=_prepare_regressor)
@kernel("TreeEnsembleRegressor", since=3, domain=DOMAIN, prepare=_prepare_regressor)
def TreeEnsembleRegressor(
    X: np.ndarray,
    *,
    aggregate_function: str = "SUM",
    base_values: list[float] | None = None,
    base_values_as_tensor: np.ndarray | None = None,
    n_targets: int | None = None,
    nodes_falsenodeids: list[int] | None = None,
    nodes_featureids: list[int] | None = None,
    nodes_hitrates: list[float] | None = None,
    nodes_hitrates_as_tensor: np.ndarray | None = None,
    nodes_missing_value_tracks_true: list[int] | None = None,
    nodes_modes: list[str] | None = None,
    nodes_nodeids: list[int] | None = None,
    nodes_treeids: list[int] | None = None,
    nodes_truenodeids: list[int] | None = None,
    nodes_values: list[float] | None = None,
    nodes_values_as_tensor: np.ndarray | None = None,
    post_transform: str = "NONE",
    target_ids: list[int] | None = None,
    target_nodeids: list[int] | None = None,
    target_treeids: list[int] | None = None,
    target_weights: list[float] | None = None,
    target_weights_as_tensor: np.ndarray | None = None,
) -> np.ndarray:
    attributes = {k: v for k, v in locals().items() if k != "X"}
    return _prepare_regressor([], **attributes)(X)


def _classify(
    forest: Forest,
    X: np.ndarray,
    labels: np.ndarray,
    how: tuple[str, type],
    base: np.ndarray,
    binary: bool,
    positive: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores; ``how`` is the post-transform and the type scores add up in (the threshold type)."""
    (transform, dtype), k = how, len(labels)
    scores, has = forest.aggregate(forest.leaves(X), k, "SUM", dtype)
    base = base.astype(dtype)
    if k > 2:
        scores[:, : len(base)] += base[:k]
        has[:, : len(base)] = True
        winner = np.argmax(np.where(has, scores, -np.inf), axis=1)
        return labels[winner], post_transform(np.where(has, scores, 0.0), transform)
    s0, s1, h0, h1 = scores[:, 0], scores[:, 1], has[:, 0], has[:, 1]
    if len(base) == 2:
        s1 = np.where(h1, base[1] + s0, s1 + base[1])
        s0 = np.where(h1, -s1, s0 + base[0])
        two = np.ones(len(s0), bool)
    else:
        s0 = s0 + (base[0] if len(base) == 1 else 0.0)
        two = h1
    pos_weight = np.where(two & h1, s1, np.where(h0, s0, 0.0))
    if binary:
        winner = pos_weight > 0.5 if positive else pos_weight > 0
        extra = 0 if positive else 2
    else:
        winner, extra = pos_weight > 0, 3 if len(base) == 0 else -1
    s0, s1 = np.where(h0, s0, 0.0), np.where(h1, s1, 0.0)  # an unscored class reads as 0
    out = post_transform(np.stack([s0, s1], axis=1), transform)
    single = post_transform(s0[:, None], transform, extra)
    if single.shape[1] == 1:
        single = np.concatenate([single, np.zeros_like(single)], axis=1)
    out = np.where(two[:, None], out, single)
    return labels[winner.astype(np.intp)], out


def _prepare_classifier(constants: list[Any], **a: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    transform = a.get("post_transform", "NONE")
    if transform not in TRANSFORMS:
        raise InvalidArgument(f"TreeEnsembleClassifier: bad post_transform {transform!r}")
    strings, ints = a.get("classlabels_strings"), a.get("classlabels_int64s")
    labels = np.asarray(list(strings), dtype=object) if strings else np.asarray(ints or [], dtype=np.int64)
    if len(labels) < 2:
        raise InvalidArgument(f"TreeEnsembleClassifier: needs at least two class labels, got {len(labels)}")
    forests = {False: _legacy_forest(a, "class", False)}
    weights = a.get("class_weights_as_tensor")
    weights = np.asarray(weights if weights is not None else a.get("class_weights") or [], np.float64)
    binary = len(labels) == 2 and len(set(a.get("class_ids") or [])) == 1
    positive = bool((weights >= 0).all())
    base = _base(a)

    def run(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        double = X.dtype == np.float64
        if double not in forests:  # float64 inputs compare against the thresholds' full precision
            forests[double] = _legacy_forest(a, "class", double)
        rows = features(X, np.float64 if double else np.float32)
        how = (transform, np.float64 if double else np.float32)
        label, scores = _classify(forests[double], rows, labels, how, base, binary, positive)
        return label, scores.astype(np.float32)

    return run


@kernel("TreeEnsembleClassifier", since=1, domain=DOMAIN, prepare=_prepare_classifier)
@kernel("TreeEnsembleClassifier", since=3, domain=DOMAIN, prepare=_prepare_classifier)
def TreeEnsembleClassifier(
    X: np.ndarray,
    *,
    base_values: list[float] | None = None,
    base_values_as_tensor: np.ndarray | None = None,
    class_ids: list[int] | None = None,
    class_nodeids: list[int] | None = None,
    class_treeids: list[int] | None = None,
    class_weights: list[float] | None = None,
    class_weights_as_tensor: np.ndarray | None = None,
    classlabels_int64s: list[int] | None = None,
    classlabels_strings: list[str] | None = None,
    nodes_falsenodeids: list[int] | None = None,
    nodes_featureids: list[int] | None = None,
    nodes_hitrates: list[float] | None = None,
    nodes_hitrates_as_tensor: np.ndarray | None = None,
    nodes_missing_value_tracks_true: list[int] | None = None,
    nodes_modes: list[str] | None = None,
    nodes_nodeids: list[int] | None = None,
    nodes_treeids: list[int] | None = None,
    nodes_truenodeids: list[int] | None = None,
    nodes_values: list[float] | None = None,
    nodes_values_as_tensor: np.ndarray | None = None,
    post_transform: str = "NONE",
) -> tuple[np.ndarray, np.ndarray]:
    attributes = {k: v for k, v in locals().items() if k != "X"}
    return _prepare_classifier([], **attributes)(X)
