"""ai.onnx.ml tree-ensemble engine and TreeEnsemble (ai.onnx.ml 5); ``ml_trees_legacy`` builds on it.

Every encoding is compiled once into one flat node table: node ``i`` sends a row to ``true[i]`` when
``x[feature[i]] <op_i> split[i]`` holds (or when ``x`` is NaN and ``missing_tracks_true[i]``), else to
``false[i]``; ``op`` is ``<=, <, >=, >, ==, !=`` (modes 0-5) or membership in the node's set of
``membership_values`` (mode 6, BRANCH_MEMBER); a leaf points at itself and carries weights ``(target, w)``.
All rows walk all trees at once, one level per step.

Per row and target ``t``, with ``w_k`` the weights the reached leaves give ``t``: SUM ``sum w_k``, AVERAGE
``sum w_k / n_trees``, MIN / MAX over the ``w_k`` (0 when none), then ``+ base_values[t]``, then the
post-transform (see ``ml.post_transform``). As in onnxruntime, a single-target model only applies PROBIT, and
with several targets a target no leaf scored stays 0 (its base value is not added).
TreeEnsemble compares and answers in the input's dtype; its ``tree_roots`` index the node list and a branch
flagged in ``nodes_trueleafs`` / ``nodes_falseleafs`` indexes the ``leaf_*`` lists instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.kernels.ml import DOMAIN, post_transform, probit
from onnxforge.runtime.registry import kernel

MODES = {
    "BRANCH_LEQ": 0,
    "BRANCH_LT": 1,
    "BRANCH_GTE": 2,
    "BRANCH_GT": 3,
    "BRANCH_EQ": 4,
    "BRANCH_NEQ": 5,
    "BRANCH_MEMBER": 6,
    "LEAF": -1,
}
_COMPARE: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    0: np.less_equal,
    1: np.less,
    2: np.greater_equal,
    3: np.greater,
    4: np.equal,
    5: np.not_equal,
}
# _TRUTH[8 * mode + outcome]: does ``mode`` hold when ``outcome = [x < s] + 2 [x == s] + 4 [x > s]`` (0: NaN)
_OUTCOMES = {0: (np.nan, 0.0), 1: (0.0, 1.0), 2: (0.0, 0.0), 4: (1.0, 0.0)}
_TRUTH = np.array(
    [[m in _COMPARE and o in _OUTCOMES and bool(_COMPARE[m](*_OUTCOMES[o])) for o in range(8)] for m in range(7)]
).reshape(-1)
AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")
TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")
_CHUNK = 1 << 20  # rows x trees walked (and rows x trees x targets gathered) at once
_DENSE = 1 << 23  # largest nodes x targets table of folded leaf weights kept per ensemble
_FOLD = {"SUM": (np.add, 0.0), "AVERAGE": (np.add, 0.0), "MIN": (np.minimum, np.inf), "MAX": (np.maximum, -np.inf)}


class Forest:
    """A compiled ensemble: the node table, the leaves' weights (CSR over nodes) and the roots."""

    def __init__(
        self,
        feature: np.ndarray,
        split: np.ndarray,
        mode: np.ndarray,
        true: np.ndarray,
        false: np.ndarray,
        missing: np.ndarray,
        roots: np.ndarray,
        leaf_nodes: np.ndarray,
        targets: np.ndarray,
        weights: np.ndarray,
        members: np.ndarray | None = None,
    ) -> None:
        n = len(feature)
        leaf = mode < 0
        self.feature = np.where(leaf, 0, feature).astype(np.intp)
        self.split, self.mode, self.leaf = split.astype(np.float64), mode.astype(np.int8), leaf
        self.true = np.where(leaf, np.arange(n), true).astype(np.intp)
        self.false = np.where(leaf, np.arange(n), false).astype(np.intp)
        if ((self.true < 0) | (self.true >= n) | (self.false < 0) | (self.false >= n)).any():
            raise InvalidArgument("tree ensemble: a branch points outside the node list")
        self.missing = missing.astype(bool) & ~leaf
        self.any_missing = bool(self.missing.any())
        self.mode_index = np.where(leaf, 0, mode).astype(np.intp)
        self.children = np.stack([self.true, self.false], axis=1).reshape(-1)
        self.roots = roots.astype(np.intp)
        self.modes = sorted(set(self.mode[~leaf].tolist()))
        self.members = np.sort(members) if members is not None else np.zeros(0, np.complex128)
        order = np.argsort(leaf_nodes, kind="stable")
        self.w_target, self.w_value = targets[order].astype(np.intp), weights[order].astype(np.float64)
        self.w_count = np.bincount(leaf_nodes, minlength=n).astype(np.intp)
        self.w_start = np.concatenate([[0], np.cumsum(self.w_count)[:-1]]).astype(np.intp)
        self.max_feature = int(self.feature[~leaf].max()) if (~leaf).any() else -1
        self.depth = self._depth()
        self._tables: dict[tuple[int, str, type], tuple[np.ndarray, np.ndarray]] = {}

    def _depth(self) -> int:
        """The longest root-to-leaf path; more levels than interior nodes means a branch loops back."""
        level, frontier, interior = 0, np.unique(self.roots), int((~self.leaf).sum())
        while True:
            frontier = frontier[~self.leaf[frontier]]
            if not frontier.size:
                return level
            if level > interior:
                raise InvalidArgument("tree ensemble: the trees contain a cycle")
            frontier, level = np.unique(np.concatenate([self.true[frontier], self.false[frontier]])), level + 1

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """``[N, n_trees]`` node index of the leaf each row reaches in each tree (``X`` as compared: float)."""
        n, trees = X.shape[0], len(self.roots)
        if X.shape[1] <= self.max_feature:
            raise InvalidArgument(f"tree ensemble: a node reads feature {self.max_feature} but X has {X.shape[1]}")
        out = np.empty((n, trees), dtype=np.intp)
        step = max(1, _CHUNK // max(trees, 1))
        for begin in range(0, n, step):
            rows = np.ascontiguousarray(X[begin : begin + step])
            flat, offsets = rows.reshape(-1), (np.arange(rows.shape[0]) * rows.shape[1])[:, None]
            at = np.broadcast_to(self.roots, (rows.shape[0], trees)).copy()
            for level in range(self.depth):
                if level % 4 == 3 and self.leaf[at].all():
                    break
                value = flat.take(offsets + self.feature.take(at))
                go = self._branch(at, value)
                if self.any_missing:
                    go |= self.missing.take(at) & np.isnan(value)
                at = self.children.take(2 * at + ~go)  # children[2i] is the true branch, [2i + 1] the false one
            out[begin : begin + step] = at
        return out

    def _branch(self, at: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Whether each row goes down the true branch of the node it is at."""
        split = self.split.take(at)
        if len(self.modes) == 1 and self.modes[0] != 6:
            return _COMPARE[self.modes[0]](value, split)
        # mixed modes: one truth-table lookup on (mode, <, ==, >) instead of a mask per mode
        outcome = (value < split) + 2 * (value == split) + 4 * (value > split)
        mode = self.mode_index.take(at)
        go = _TRUTH.take(8 * mode + outcome)
        if 6 in self.modes:
            hit = mode == 6
            query = at[hit] + 1j * value[hit]
            pos = np.minimum(np.searchsorted(self.members, query), max(len(self.members) - 1, 0))
            go[hit] = self.members[pos] == query if len(self.members) else False
        return go

    def aggregate(self, leaves: np.ndarray, width: int, how: str, dtype: type) -> tuple[np.ndarray, np.ndarray]:
        """``[N, width]`` leaf weights aggregated in ``dtype`` (in tree order) and whether any leaf scored each cell."""
        if (self.w_target >= width).any() or (self.w_target < 0).any():
            raise InvalidArgument(f"tree ensemble: a leaf targets an index outside [0, {width})")
        if len(self.leaf) * width > _DENSE:
            return self._aggregate_sparse(leaves, width, how, dtype)
        if (width, how, dtype) not in self._tables:  # per node: its weights folded per target, and which it scores
            nodes = np.repeat(np.arange(len(self.leaf)), self.w_count)
            scored = np.zeros((len(self.leaf), width), bool)
            scored[nodes, self.w_target] = True
            fold, start = _FOLD[how]
            table = np.full((len(self.leaf), width), start, dtype=dtype)
            fold.at(table, (nodes, self.w_target), self.w_value.astype(dtype))
            self._tables[width, how, dtype] = (table, scored)
        table, scored = self._tables[width, how, dtype]
        n, trees = leaves.shape
        scores, has = np.empty((n, width), dtype), np.empty((n, width), bool)
        step = max(1, _CHUNK // max(trees * width, 1))
        for begin in range(0, n, step):
            at = leaves[begin : begin + step]
            has[begin : begin + step] = scored[at].any(axis=1)
            scores[begin : begin + step] = _FOLD[how][0].reduce(table[at], axis=1)
        return (scores if how in ("SUM", "AVERAGE") else np.where(has, scores, dtype(0))), has

    def _aggregate_sparse(self, leaves: np.ndarray, width: int, how: str, dtype: type) -> tuple[np.ndarray, np.ndarray]:
        """``aggregate`` through one scatter of every reached weight, for tables too large to hold densely."""
        n = leaves.shape[0]
        flat = leaves.reshape(-1)
        counts = self.w_count[flat]
        rows = np.repeat(np.repeat(np.arange(n), leaves.shape[1]), counts)
        ends = np.cumsum(counts)
        pick = np.repeat(self.w_start[flat] - (ends - counts), counts) + np.arange(int(ends[-1]) if len(ends) else 0)
        cells = rows * width + self.w_target[pick]
        has = np.bincount(cells, minlength=n * width).reshape(n, width) > 0
        fold, start = _FOLD[how]
        scores = np.full(n * width, start, dtype=dtype)
        fold.at(scores, cells, self.w_value[pick].astype(dtype))
        scores = scores.reshape(n, width)
        return (scores if how in ("SUM", "AVERAGE") else np.where(has, scores, dtype(0))), has


def features(X: np.ndarray, compare: type) -> np.ndarray:
    """X as ``[N, C]`` float64 holding the values the comparisons see (ints go through float32, as C++ does)."""
    if X.ndim not in (1, 2):
        raise InvalidArgument(f"tree ensemble: X must be [C] or [N, C], got shape {list(X.shape)}")
    rows = X.reshape(1, -1) if X.ndim == 1 else X
    return rows.astype(compare).astype(np.float64)


def regress(
    forest: Forest, X: np.ndarray, width: int, how: str, transform: str, base: np.ndarray, dtype: type
) -> np.ndarray:
    """Aggregate in ``dtype`` (as onnxruntime's threshold type), add the base values, post-transform; with several
    targets a target no leaf scored is 0."""
    scores, has = forest.aggregate(forest.leaves(X), width, how, dtype)
    if how == "AVERAGE":
        scores = scores / dtype(max(len(forest.roots), 1))
    base = base.astype(dtype)
    if width == 1:
        scores = scores + (base[0] if len(base) == 1 else dtype(0))
        return probit(scores).astype(np.float64) if transform == "PROBIT" else scores.astype(np.float64)
    if len(base) == width:
        scores = scores + base
    return post_transform(np.where(has, scores, 0.0).astype(np.float64), transform)


def _v5_forest(a: dict[str, Any]) -> Forest:
    """Compile TreeEnsemble-5: interior nodes first, then one table entry per leaf."""
    modes = np.asarray(a["nodes_modes"]).reshape(-1).astype(np.int64)
    n, leaves = len(modes), len(a["leaf_targetids"])
    split = np.asarray(a["nodes_splits"], dtype=np.float64).reshape(-1)
    columns = [
        a["nodes_featureids"],
        a["nodes_truenodeids"],
        a["nodes_falsenodeids"],
        a["nodes_trueleafs"],
        a["nodes_falseleafs"],
        split,
    ]
    if any(len(c) != n for c in columns) or len(np.asarray(a["leaf_weights"]).reshape(-1)) != leaves:
        raise InvalidArgument("TreeEnsemble: the nodes_* (or leaf_*) attributes differ in length")
    if ((modes < 0) | (modes > 6)).any():
        raise InvalidArgument(f"TreeEnsemble: node modes must be in [0, 6], got {sorted(set(modes.tolist()))}")
    true = np.asarray(a["nodes_truenodeids"]) + n * np.asarray(a["nodes_trueleafs"], dtype=bool)
    false = np.asarray(a["nodes_falsenodeids"]) + n * np.asarray(a["nodes_falseleafs"], dtype=bool)
    missing = np.zeros(n + leaves, bool)
    tracks = list(a.get("nodes_missing_value_tracks_true") or [])[:n]
    missing[: len(tracks)] = np.asarray(tracks, dtype=bool)
    members: list[complex] = []
    if (modes == 6).any():
        values = np.asarray(
            a.get("membership_values") if a.get("membership_values") is not None else [], dtype=np.float64
        ).reshape(-1)
        groups = np.split(values, np.flatnonzero(np.isnan(values)))
        groups = [g[~np.isnan(g)] for g in groups]
        member_nodes = np.flatnonzero(modes == 6)
        if len(groups) < len(member_nodes):
            raise InvalidArgument("TreeEnsemble: membership_values has fewer sets than BRANCH_MEMBER nodes")
        members = [node + 1j * v for node, group in zip(member_nodes, groups) for v in group]
    pad = np.zeros(leaves, np.int64)
    return Forest(
        np.concatenate([np.asarray(a["nodes_featureids"]), pad]),
        np.concatenate([split, pad]),
        np.concatenate([modes, pad - 1]),
        np.concatenate([true, pad]),
        np.concatenate([false, pad]),
        missing,
        np.asarray(a["tree_roots"]),
        n + np.arange(leaves),
        np.asarray(a["leaf_targetids"]),
        np.asarray(a["leaf_weights"], dtype=np.float64).reshape(-1),
        np.asarray(members, np.complex128),
    )


def _prepare_v5(constants: list[Any], **a: Any) -> Callable[[np.ndarray], np.ndarray]:
    how, transform = a.get("aggregate_function", 1), a.get("post_transform", 0)
    if not (0 <= how < 4 and 0 <= transform < 5):
        raise InvalidArgument(f"TreeEnsemble: bad aggregate_function {how} or post_transform {transform}")
    forest, width = _v5_forest(a), int(a.get("n_targets") or 1)

    def run(X: np.ndarray) -> np.ndarray:
        rows = features(X, X.dtype if X.dtype.kind == "f" else np.float32)
        dtype = np.float64 if X.dtype == np.float64 else np.float32
        scores = regress(forest, rows, width, AGGREGATES[how], TRANSFORMS[transform], np.zeros(0), dtype)
        return scores.astype(X.dtype)

    return run


@kernel("TreeEnsemble", since=5, domain=DOMAIN, prepare=_prepare_v5)
def TreeEnsemble(
    X: np.ndarray,
    *,
    nodes_featureids: list[int],
    nodes_falseleafs: list[int],
    nodes_falsenodeids: list[int],
    nodes_modes: np.ndarray,
    nodes_splits: np.ndarray,
    nodes_trueleafs: list[int],
    nodes_truenodeids: list[int],
    leaf_targetids: list[int],
    leaf_weights: np.ndarray,
    tree_roots: list[int],
    aggregate_function: int = 1,
    membership_values: np.ndarray | None = None,
    n_targets: int | None = None,
    nodes_hitrates: np.ndarray | None = None,
    nodes_missing_value_tracks_true: list[int] | None = None,
    post_transform: int = 0,
) -> np.ndarray:
    attributes = {k: v for k, v in locals().items() if k != "X"}
    return _prepare_v5([], **attributes)(X)
