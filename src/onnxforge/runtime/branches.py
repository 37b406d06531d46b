"""Inter-op parallelism (``ExecutionMode.ORT_PARALLEL``): independent branches of a plan run side by side.

A *section* is a run of consecutive plan steps ``[start, end)`` that splits into two or more *branches*:
groups of steps that read only each other's outputs or values computed before ``start``. The step at
``end`` is the join (it reads from two or more branches, like Inception's Concat), so nothing after the
section starts before every branch is done. Sections are found once, at build time:

- a fork is a step whose outputs two or more later steps read; the window after it grows step by step,
  each step joining the branches it reads from (union-find), until a step reads from two branches;
- a window with at least two branches that each hold a heavy step (a convolution or a matrix product)
  becomes a section; lighter ones would cost more in hand-offs (~30-100 us) than they save.

At run time the branches are packed into as many parts as the run has intra-op threads (heaviest first,
each into the lightest part) and the parts run through :func:`threads.parallel`. Inside a section each
step runs single-threaded, so the parts never oversubscribe the cores. A slot freed by a branch step is
freed there only when the same branch produced it and nothing outside the branch reads it; every other
free waits until the section ends, because another branch may still read the value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from onnxforge.runtime.threads import parallel, single_threaded, workers

Step = tuple[Callable[..., Any], tuple[int, ...], tuple[int, ...], tuple[int, ...]]

# Ops whose kernels do enough work to be worth a branch of their own.
HEAVY_OPS = frozenset(
    {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MatMul", "Gemm", "MatMulInteger", "QLinearMatMul"}
    | {"LSTM", "GRU", "RNN", "Attention", "MultiHeadAttention", "Einsum"}
)
_HEAVY_COST, _LIGHT_COST = 10, 1
_MAX_WINDOW = 2000


@dataclass(frozen=True)
class Section:
    start: int
    end: int
    # Per branch: (estimated cost, [(step index, step with the frees it may do itself)]).
    branches: tuple[tuple[int, tuple[tuple[int, Step], ...]], ...]
    deferred_frees: tuple[int, ...]


def find_sections(steps: Sequence[Step], op_types: Sequence[str]) -> list[Section]:
    producer = {slot: index for index, step in enumerate(steps) for slot in step[2]}
    preds = [sorted({producer[slot] for slot in step[1] if slot in producer}) for step in steps]
    readers: dict[int, set[int]] = {}
    for index, step in enumerate(steps):
        for slot in step[1]:
            readers.setdefault(slot, set()).add(index)
    cost = [_HEAVY_COST if op in HEAVY_OPS else _LIGHT_COST for op in op_types]
    heavy = [op in HEAVY_OPS for op in op_types]
    sections: list[Section] = []
    index = 0
    while index < len(steps):
        fork = len({reader for slot in steps[index][2] for reader in readers.get(slot, ())}) >= 2
        section = _grow(index + 1, steps, preds, cost, heavy, readers) if fork else None
        if section is None:
            index += 1
        else:
            sections.append(section)
            index = section.end
    return sections


def _grow(
    start: int,
    steps: Sequence[Step],
    preds: list[list[int]],
    cost: list[int],
    heavy: list[bool],
    readers: dict[int, set[int]],
) -> Section | None:
    parent: dict[int, int] = {}

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    end = start
    while end < len(steps) and end - start < _MAX_WINDOW:
        inside = {root(p) for p in preds[end] if p >= start}
        if len(inside) >= 2:
            break  # the join
        parent[end] = end
        for other in inside:
            parent[other] = end
        end += 1
    groups: dict[int, list[int]] = {}
    for member in range(start, end):
        groups.setdefault(root(member), []).append(member)
    branches = [members for members in groups.values() if any(heavy[m] for m in members)]
    if len(branches) < 2 or end - start >= _MAX_WINDOW:
        return None
    branch_of = {member: key for key, members in groups.items() for member in members}
    deferred: list[int] = []
    packed = []
    for members in groups.values():
        own = []
        for member in members:
            call, ins, outs, frees = steps[member]
            kept = []
            for slot in frees:
                produced_here = any(slot in steps[m][2] for m in members)
                read_here = all(branch_of.get(r) == branch_of[member] for r in readers.get(slot, ()))
                (kept if produced_here and read_here else deferred).append(slot)
            own.append((member, (call, ins, outs, tuple(kept))))
        packed.append((sum(cost[m] for m in members), tuple(own)))
    return Section(start, end, tuple(packed), tuple(deferred))


def run_section(
    section: Section, values: list[Any], execute: Callable[[list[Any], Iterable[tuple[int, Step]]], None]
) -> None:
    """Run a section's branches on the run's intra-op threads, each step single-threaded; ``execute`` is the
    plan's step runner (it names the failing node in errors)."""
    parts: list[list[tuple[int, Step]]] = [[] for _ in range(max(1, min(workers(), len(section.branches))))]
    loads = [0] * len(parts)
    for branch_cost, branch in sorted(section.branches, key=lambda item: -item[0]):
        lightest = loads.index(min(loads))
        parts[lightest].extend(branch)
        loads[lightest] += branch_cost

    def run_part(part: list[tuple[int, Step]]) -> None:
        with single_threaded():
            execute(values, part)

    parallel([lambda part=part: run_part(part) for part in parts])
    for slot in section.deferred_frees:
        values[slot] = None
