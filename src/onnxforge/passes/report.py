"""What ``simplify`` reports: op counts before and after, sizes, and what each pass did.

Counts cover the main graph and every subgraph (If/Loop/Scan bodies) and model-local functions; the
op key is ``Op`` for the default domain and ``domain::Op`` otherwise, as ``onnxforge info`` prints them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import onnx_ir as ir

from onnxforge.passes.verify import tensor_bytes


def op_counts(model: ir.Model) -> Counter[str]:
    counts: Counter[str] = Counter()
    graphs: list[ir.Graph | ir.Function] = [model.graph, *model.functions.values()]
    for graph in graphs:
        for node in ir.traversal.RecursiveGraphIterator(graph):
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            counts[key] += 1
    return counts


def initializer_count(model: ir.Model) -> int:
    return sum(len(graph.initializers) for graph in [model.graph, *model.graph.subgraphs()])


def model_size(model: ir.Model) -> int:
    """Serialized size in bytes: the protobuf when it fits in one, else the graph's protobuf plus the tensors."""
    weights = tensor_bytes(model)
    if weights < 1_000_000_000:
        return ir.serde.serialize_model(model).ByteSize()
    return weights + len(model.graph) * 64


@dataclass
class ModelStats:
    ops: Counter[str]
    nodes: int
    initializers: int
    size: int

    @classmethod
    def of(cls, model: ir.Model, size: int | None = None) -> ModelStats:
        ops = op_counts(model)
        return cls(ops, sum(ops.values()), initializer_count(model), model_size(model) if size is None else size)


@dataclass
class SimplifyReport:
    """The outcome of one ``simplify`` call."""

    before: ModelStats
    after: ModelStats
    changed_passes: list[str] = field(default_factory=list)  # passes that changed the graph, first change first
    dropped_passes: dict[str, str] = field(default_factory=dict)  # pass -> the mismatch it caused
    failed_passes: dict[str, str] = field(default_factory=dict)  # pass -> the error it raised
    verified: bool = False
    verification: str = ""  # how it was checked, or why it could not be
    rounds: int = 0

    @property
    def nodes_before(self) -> int:
        return self.before.nodes

    @property
    def nodes_after(self) -> int:
        return self.after.nodes

    def rows(self) -> list[tuple[str, int, int]]:
        """``(op, before, after)`` for every op type in either model, by op name."""
        ops = sorted(set(self.before.ops) | set(self.after.ops))
        return [(op, self.before.ops.get(op, 0), self.after.ops.get(op, 0)) for op in ops]

    def summary(self) -> str:
        lines = [f"{'op':<28}{'original':>10}{'simplified':>12}"]
        lines += [f"{op:<28}{a:>10}{b:>12}" for op, a, b in self.rows()]
        lines.append(f"{'nodes':<28}{self.before.nodes:>10}{self.after.nodes:>12}")
        lines.append(f"{'initializers':<28}{self.before.initializers:>10}{self.after.initializers:>12}")
        lines.append(f"{'model size':<28}{format_bytes(self.before.size):>10}{format_bytes(self.after.size):>12}")
        lines.append(f"changed by: {', '.join(self.changed_passes) or 'nothing'}")
        for name, why in self.dropped_passes.items():
            lines.append(f"dropped {name}: {why}")
        for name, why in self.failed_passes.items():
            lines.append(f"failed {name}: {why}")
        lines.append(("verified: " if self.verified else "NOT verified: ") + self.verification)
        return "\n".join(lines)


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}GiB"


def parse_size(text: str) -> int:
    """``"1024"``, ``"10KB"``, ``"1.5MiB"``, ``"2G"`` as bytes (K/M/G are powers of 1024, as in onnxsim)."""
    cleaned = text.strip().upper().replace("IB", "").rstrip("B")
    factor = 1
    for suffix, power in (("K", 1), ("M", 2), ("G", 3), ("T", 4)):
        if cleaned.endswith(suffix):
            cleaned, factor = cleaned[:-1], 1024**power
            break
    try:
        return int(float(cleaned) * factor)
    except ValueError as exc:
        raise ValueError(f"not a size: {text!r} (examples: 1024, 10KB, 1.5MB, 2GB)") from exc
