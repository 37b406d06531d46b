"""Control flow: If, Loop and Scan, running their GRAPH attributes as sub-plans.

Every sub-plan is run with ``plan.run(inputs, _outer)``: ``_outer`` maps the outer-scope values the
subgraphs read (captures of nested subgraphs included) to their current values. Values pass through
untouched, so loop-carried state may be a tensor, a sequence (list) or an empty optional (None).

- ``If(cond)`` runs ``then_branch`` when the single element of cond is true, else ``else_branch``, and
  returns that branch's outputs.
- ``Loop(M, cond, v_initial...)`` runs ``body(i, cond, v...) -> (cond', v'..., scan...)`` for
  i = 0, 1, ... while ``i < M`` (M omitted: no bound) and cond (omitted: true); it returns the final v
  and every scan output stacked along a new axis 0.
- ``Scan`` (opset 9+) feeds the body slices ``s_j<axis_j>[t]`` of each scan input (walked backwards when
  its direction is 1) with the states, and stacks each scan output along its output axis (prepending when
  its direction is 1). ``Scan-8`` has a leading batch axis on every state, input and output, scans axis 1,
  takes optional per-batch ``sequence_lens`` and pads scan outputs past them with zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument
from onnxforge.runtime.plan import Plan
from onnxforge.runtime.registry import kernel

Outer = Mapping[Any, Any] | None


def _as_outputs(values: Sequence[Any]) -> Any:
    """A kernel result: the value itself for one output (it may be a list = a sequence), else a tuple."""
    return values[0] if len(values) == 1 else tuple(values)


def _truth(cond: Any, what: str) -> bool:
    array = np.asarray(cond)
    if array.size != 1:
        raise InvalidArgument(f"{what} must hold exactly one element, got shape {array.shape}")
    return bool(array.reshape(-1)[0])


def _stack(
    items: list[Any], axis: int, dtype: np.dtype | None, what: str, element: tuple[int, ...] | None = None
) -> np.ndarray:
    if not items:
        # A scan output that never ran has no element to take a shape from: like onnxruntime, use the shape
        # the body declares for it (``element``), with the length 0 at ``axis``; [0] when it declares none.
        if element is None:
            return np.zeros((0,), dtype=dtype or np.float32)
        return np.zeros((*element[:axis], 0, *element[axis:]), dtype=dtype or np.float32)
    try:
        return np.stack(items, axis=axis)
    except ValueError as exc:
        shapes = sorted({np.shape(item) for item in items})
        raise InvalidArgument(f"{what}: iterations produced differing shapes {shapes}: {exc}") from exc


@kernel("If", since=1)
def If(cond: np.ndarray, *, then_branch: Plan, else_branch: Plan, _outer: Outer = None) -> Any:
    branch = then_branch if _truth(cond, "If's cond") else else_branch
    return _as_outputs(branch.run([], _outer))


@kernel("Loop", since=1)
def Loop(
    M: np.ndarray | None = None,
    cond: np.ndarray | None = None,
    *v_initial: Any,
    body: Plan,
    _output_dtypes: tuple[np.dtype | None, ...] = (),
    _outer: Outer = None,
) -> Any:
    num_carried = len(v_initial)
    num_scans = len(body.output_slots) - 1 - num_carried
    if len(body.input_slots) != 2 + num_carried or num_scans < 0:
        raise InvalidArgument(
            f"Loop body takes {len(body.input_slots)} inputs and gives {len(body.output_slots)} outputs, "
            f"expected {2 + num_carried} inputs and at least {1 + num_carried} outputs for {num_carried} carried values"
        )
    trip_limit = None if M is None else int(np.asarray(M).reshape(-1)[0])
    keep_going = True if cond is None else _truth(cond, "Loop's cond")
    carried = list(v_initial)
    scans: list[list[Any]] = [[] for _ in range(num_scans)]
    iteration = 0
    while keep_going and (trip_limit is None or iteration < trip_limit):
        outputs = body.run([np.array(iteration, dtype=np.int64), np.array(keep_going), *carried], _outer)
        keep_going = _truth(outputs[0], "Loop body's cond output")
        carried = outputs[1 : 1 + num_carried]
        for collected, value in zip(scans, outputs[1 + num_carried :]):
            collected.append(value)
        iteration += 1
    dtypes = list(_output_dtypes[num_carried:]) + [None] * num_scans
    elements = body.output_shapes[1 + num_carried :]
    stacked = [_stack(items, 0, dtypes[k], f"Loop scan output {k}", elements[k]) for k, items in enumerate(scans)]
    return _as_outputs([*carried, *stacked])


def _axes(values: list[int] | None, count: int, ranks: Sequence[int], what: str) -> list[int]:
    """One axis per input/output, normalised against each rank (negative counts from the back)."""
    axes = list(values) if values else [0] * count
    if len(axes) != count:
        raise InvalidArgument(f"{what}: expected {count} values, got {len(axes)}")
    for index, (axis, rank) in enumerate(zip(axes, ranks)):
        if not -rank <= axis < rank:
            raise InvalidArgument(f"{what}[{index}] = {axis} is out of range for rank {rank}")
    return [axis % rank for axis, rank in zip(axes, ranks)]


def _flags(values: list[int] | None, count: int, what: str) -> list[int]:
    flags = list(values) if values else [0] * count
    if len(flags) != count:
        raise InvalidArgument(f"{what}: expected {count} values, got {len(flags)}")
    return flags


@kernel("Scan", since=9)
def Scan(
    *initial_state_and_scan_inputs: Any,
    body: Plan,
    num_scan_inputs: int,
    scan_input_axes: list[int] | None = None,
    scan_input_directions: list[int] | None = None,
    scan_output_axes: list[int] | None = None,
    scan_output_directions: list[int] | None = None,
    _output_dtypes: tuple[np.dtype | None, ...] = (),
    _outer: Outer = None,
) -> Any:
    values = list(initial_state_and_scan_inputs)
    num_states = len(values) - num_scan_inputs
    num_outputs = len(body.output_slots) - num_states
    if num_states < 0 or num_outputs < 0 or num_scan_inputs < 1:
        raise InvalidArgument(f"Scan got {len(values)} inputs for num_scan_inputs={num_scan_inputs}")
    states, scan_inputs = values[:num_states], values[num_states:]
    in_axes = _axes(scan_input_axes, num_scan_inputs, [x.ndim for x in scan_inputs], "scan_input_axes")
    in_directions = _flags(scan_input_directions, num_scan_inputs, "scan_input_directions")
    lengths = {x.shape[axis] for x, axis in zip(scan_inputs, in_axes)}
    if len(lengths) != 1:
        raise InvalidArgument(f"Scan inputs disagree on the sequence length: {sorted(lengths)}")
    (steps,) = lengths
    # Move each scan axis to the front (reversed if scanned backwards) so step t is a view x[t, ...]; the
    # Ellipsis keeps a 0-d slice an array instead of a numpy scalar.
    fronted = [np.moveaxis(x, axis, 0) for x, axis in zip(scan_inputs, in_axes)]
    fronted = [x[::-1] if direction else x for x, direction in zip(fronted, in_directions)]
    collected: list[list[np.ndarray]] = [[] for _ in range(num_outputs)]
    for t in range(steps):
        outputs = body.run([*states, *(x[t, ...] for x in fronted)], _outer)
        states = outputs[:num_states]
        for items, value in zip(collected, outputs[num_states:]):
            items.append(value)
    out_directions = _flags(scan_output_directions, num_outputs, "scan_output_directions")
    dtypes = list(_output_dtypes[num_states:]) + [None] * num_outputs
    elements = body.output_shapes[num_states:]
    if steps == 0:  # no element was produced: the body's declared shapes (if any) give the ranks
        if any(element is None for element in elements):
            return _as_outputs([*states, *(_stack([], 0, dtypes[k], "", elements[k]) for k in range(num_outputs))])
        out_axes = _axes(
            scan_output_axes, num_outputs, [len(e) + 1 for e in elements if e is not None], "scan_output_axes"
        )
        return _as_outputs(
            [*states, *(_stack([], out_axes[k], dtypes[k], "", elements[k]) for k in range(num_outputs))]
        )
    ranks = [np.ndim(items[0]) + 1 for items in collected]
    out_axes = _axes(scan_output_axes, num_outputs, ranks, "scan_output_axes")
    scans = [
        _stack(items[::-1] if direction else items, axis, dtypes[k], f"Scan output {k}")
        for k, (items, axis, direction) in enumerate(zip(collected, out_axes, out_directions))
    ]
    return _as_outputs([*states, *scans])


@kernel("Scan", since=8)
def Scan_8(
    sequence_lens: np.ndarray | None = None,
    *initial_state_and_scan_inputs: Any,
    body: Plan,
    num_scan_inputs: int,
    directions: list[int] | None = None,
    _output_dtypes: tuple[np.dtype | None, ...] = (),
    _outer: Outer = None,
) -> Any:
    values = list(initial_state_and_scan_inputs)
    num_states = len(values) - num_scan_inputs
    num_outputs = len(body.output_slots) - num_states
    if num_states < 0 or num_outputs < 0 or num_scan_inputs < 1:
        raise InvalidArgument(f"Scan got {len(values)} inputs for num_scan_inputs={num_scan_inputs}")
    states, scan_inputs = values[:num_states], values[num_states:]
    in_directions = _flags(directions, num_scan_inputs, "directions")
    shapes = {x.shape[:2] for x in scan_inputs}
    if len(shapes) != 1 or any(x.ndim < 2 for x in scan_inputs):
        raise InvalidArgument(f"Scan-8 inputs must share [batch, sequence] leading dims, got {sorted(shapes)}")
    ((batch, max_steps),) = shapes
    lengths = [max_steps] * batch if sequence_lens is None else [int(n) for n in np.asarray(sequence_lens).reshape(-1)]
    if len(lengths) != batch or any(not 0 <= n <= max_steps for n in lengths):
        raise InvalidArgument(f"sequence_lens must be {batch} values in [0, {max_steps}], got {lengths}")
    final_states: list[list[Any]] = [[] for _ in range(num_states)]
    batch_outputs: list[list[np.ndarray]] = [[] for _ in range(num_outputs)]
    for b in range(batch):
        steps = lengths[b]
        # A backward input walks the valid part of its sequence only, from steps - 1 down to 0.
        inputs = [x[b, :steps][::-1] if d else x[b, :steps] for x, d in zip(scan_inputs, in_directions)]
        state = [s[b, ...] for s in states]
        collected: list[list[np.ndarray]] = [[] for _ in range(num_outputs)]
        for t in range(steps):
            outputs = body.run([*state, *(x[t, ...] for x in inputs)], _outer)
            state = outputs[:num_states]
            for items, value in zip(collected, outputs[num_states:]):
                items.append(value)
        for k, value in enumerate(state):
            final_states[k].append(value)
        for k, items in enumerate(collected):
            batch_outputs[k].append(items)
    scans = [_padded(per_batch, max_steps, f"Scan output {k}") for k, per_batch in enumerate(batch_outputs)]
    finals = [_stack(items, 0, None, f"Scan state {k}") for k, items in enumerate(final_states)]
    return _as_outputs([*finals, *scans])


def _padded(per_batch: list[list[np.ndarray]], length: int, what: str) -> np.ndarray:
    """[batch, length, ...]: each batch entry's outputs stacked and zero-padded to the longest sequence."""
    template = next((items[0] for items in per_batch if items), None)
    if template is None:
        return np.zeros((len(per_batch), length), dtype=np.float32)
    padding = np.zeros(np.shape(template), dtype=np.asarray(template).dtype)
    rows = [_stack(items + [padding] * (length - len(items)), 0, None, what) for items in per_batch]
    return _stack(rows, 0, None, what)
