"""The compiled execution plan: a topologically ordered list of bound steps over integer slots.

Everything that does not depend on the run's inputs is settled once, when the plan is built
(plan_builder.py): the kernel for each node (highest since <= opset), its attributes (bound with
``functools.partial``), constant inputs and ``Constant`` nodes (stored in the slot template), optional
``prepare`` hooks (weight packing), and the slots to free after each step (an intermediate is dropped right
after its last use). This module runs a built plan.

Subgraphs (If/Loop/Scan bodies) become sub-plans. A sub-plan lists the outer-scope values its nodes read
(``captures``); the parent step passes them in, keyed by their onnx-ir ``Value``, so nesting works to
any depth.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxforge._errors import Fail, OnnxForgeError
from onnxforge.runtime import branches, fusion
from onnxforge.runtime.fusion import NodeInfo

_DISCARD = 0  # slot that receives outputs the node leaves unnamed
_NONE = 1  # slot that always holds None, for omitted optional inputs
assert fusion._NONE == _NONE
_FIRST_SLOT = 2

# The terminate check and profiler of the run in progress, so sub-plans run by control-flow kernels see them.
_OBSERVERS: contextvars.ContextVar[tuple[Callable[[], bool] | None, Profiler | None]] = contextvars.ContextVar(
    "onnxforge_run_observers", default=(None, None)
)

Step = tuple[Callable[..., Any], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class Profiler:
    """Collects ORT-style ``<node>_kernel_time`` events (chrome-trace, durations in µs)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._origin = time.perf_counter()

    def record(self, info: NodeInfo, start: float, end: float, inputs: list[Any], outputs: list[Any]) -> None:
        self._event(info, start, end, inputs, outputs, info.fused)
        # A fused step did the nodes' work in one call: the others get an event each, of zero length.
        for other in info.fused:
            self._event(other, end, end, outputs, outputs, ())

    def _event(
        self,
        info: NodeInfo,
        start: float,
        end: float,
        inputs: list[Any],
        outputs: list[Any],
        fused: tuple[NodeInfo, ...],
    ) -> None:
        args: dict[str, Any] = {
            "op_name": info.op_type,
            "input_type_shape": [_shape_of(v) for v in inputs],
            "output_type_shape": [_shape_of(v) for v in outputs],
        }
        if fused:
            args["fused_nodes"] = [other.name for other in fused]
        self.events.append(
            {
                "cat": "Node",
                "pid": 0,
                "tid": 0,
                "ph": "X",
                "name": f"{info.name}_kernel_time",
                "ts": int((start - self._origin) * 1e6),
                "dur": max(int((end - start) * 1e6), 0),
                "args": args,
            }
        )


def _shape_of(value: Any) -> dict[str, list[int]]:
    if isinstance(value, np.ndarray):
        return {str(value.dtype): list(value.shape)}
    return {type(value).__name__: []}


class Plan:
    """A runnable plan for one graph. ``run`` is re-entrant: each call has its own slot list."""

    def __init__(
        self,
        steps: list[Step],
        infos: list[NodeInfo],
        template: list[Any],
        input_slots: list[int],
        output_slots: list[int],
        captures: list[tuple[ir.Value, int]],
        guarded: Sequence[int] = (),
        fallback: Callable[[], Plan] | None = None,
    ) -> None:
        self.steps = steps
        self.infos = infos
        self._template = template
        self.input_slots = input_slots
        self.output_slots = output_slots
        self.captures = captures
        # Overridable initializers this plan folded as constants: fed anything but their default object,
        # the run goes to the unoptimized ``fallback`` plan (built on first need, same slot numbers).
        self._guarded = tuple(guarded)
        self._fallback = fallback
        self._fallback_plan: Plan | None = None
        # Independent branches that run side by side (ExecutionMode.ORT_PARALLEL; see branches.py).
        self.sections: list[branches.Section] = []
        # The static shape each output declares (None: not fully known): a Loop or Scan that runs zero times
        # shapes its empty scan outputs from its body's.
        self.output_shapes: list[tuple[int, ...] | None] = [None] * len(output_slots)

    @property
    def captured_values(self) -> list[ir.Value]:
        return [value for value, _ in self.captures]

    def default_for(self, slot: int) -> Any:
        """The build-time value of a slot: an overridable initializer's default, else None."""
        return self._template[slot]

    def pruned(self, output_slots: list[int]) -> Plan:
        """A plan that computes only ``output_slots``: steps nothing needed are dropped."""
        needed = set(output_slots)
        keep: list[int] = []
        for index in range(len(self.steps) - 1, -1, -1):
            _, ins, outs, _ = self.steps[index]
            if needed.intersection(outs):
                keep.append(index)
                needed.update(ins)
        keep.reverse()
        fallback = self._fallback
        return Plan(
            [self.steps[i] for i in keep],
            [self.infos[i] for i in keep],
            self._template,
            self.input_slots,
            output_slots,
            self.captures,
            self._guarded,
            None if fallback is None else lambda: fallback().pruned(output_slots),
        )

    def run(
        self,
        inputs: Sequence[Any],
        outer: Mapping[ir.Value, Any] | None = None,
        *,
        overrides: Mapping[int, Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
        profiler: Profiler | None = None,
    ) -> list[Any]:
        values = self._template.copy()
        for slot, value in zip(self.input_slots, inputs, strict=True):
            values[slot] = value
        if overrides:
            for slot, value in overrides.items():
                values[slot] = value
        if self._guarded and any(values[slot] is not self._template[slot] for slot in self._guarded):
            return self._unoptimized().run(
                inputs, outer, overrides=overrides, should_stop=should_stop, profiler=profiler
            )
        if self.captures:
            assert outer is not None, "a sub-plan with captures needs its outer values"
            for value_ref, slot in self.captures:
                values[slot] = outer[value_ref]
        if should_stop is None and profiler is None:
            # A sub-plan (If/Loop/Scan body) inherits its run's observers.
            should_stop, profiler = _OBSERVERS.get()
        if should_stop is None and profiler is None:
            self._run_steps(values)
        else:
            token = _OBSERVERS.set((should_stop, profiler))
            try:
                self._run_steps_observed(values, should_stop, profiler)
            finally:
                _OBSERVERS.reset(token)
        return [values[slot] for slot in self.output_slots]

    def _unoptimized(self) -> Plan:
        if self._fallback_plan is None:
            assert self._fallback is not None
            self._fallback_plan = self._fallback()
        return self._fallback_plan

    def _run_steps(self, values: list[Any], first: int = 0, stop: int | None = None) -> None:
        if self.sections and stop is None:
            for section in self.sections:
                self._run_steps(values, first, section.start)
                branches.run_section(section, values, self._execute)
                first = section.end
            stop = len(self.steps)
        steps = self.steps if first == 0 and stop is None else self.steps[first:stop]
        self._execute(values, enumerate(steps, first))

    def _execute(self, values: list[Any], indexed_steps: Iterable[tuple[int, Step]]) -> None:
        """Run ``(plan index, step)`` pairs in order: store each result, free what the step frees."""
        index = 0
        try:
            for index, (call, ins, outs, frees) in indexed_steps:  # noqa: B007 - read in except
                result = call(*[values[i] for i in ins])
                if type(result) is tuple:
                    for slot, item in zip(outs, result):
                        values[slot] = item
                else:
                    values[outs[0]] = result
                for slot in frees:
                    values[slot] = None
        except Exception as exc:
            raise self._node_error(index, exc) from exc

    def _run_steps_observed(
        self, values: list[Any], should_stop: Callable[[], bool] | None, profiler: Profiler | None
    ) -> None:
        index = 0
        try:
            for index, (call, ins, outs, frees) in enumerate(self.steps):
                if should_stop is not None and should_stop():
                    raise Fail("Exiting due to terminate flag being set to true.")
                args = [values[i] for i in ins]
                start = time.perf_counter()
                result = call(*args)
                results = result if type(result) is tuple else (result,)
                if profiler is not None:
                    profiler.record(self.infos[index], start, time.perf_counter(), args, list(results))
                for slot, item in zip(outs, results):
                    values[slot] = item
                for slot in frees:
                    values[slot] = None
        except Exception as exc:
            raise self._node_error(index, exc) from exc

    def _node_error(self, index: int, exc: Exception) -> Exception:
        info = self.infos[index]
        if isinstance(exc, OnnxForgeError):
            if info.describe() in str(exc) or "terminate flag" in str(exc):
                return exc
            return type(exc)(f"Running {info.describe()} failed: {exc}")
        return Fail(f"Running {info.describe()} failed: {type(exc).__name__}: {exc}")
