"""``InferenceSession``: onnxruntime's Python API over the onnxforge plan."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

import onnxforge.runtime.kernels  # noqa: F401 - registers the built-in kernels
from onnxforge._errors import Fail, InvalidArgument
from onnxforge.ir.dtypes import np_dtype_for, proto_type_string
from onnxforge.ir.load import ModelSource, check_model
from onnxforge.ir.map_types import without_map_types
from onnxforge.ir.text import text_errors
from onnxforge.runtime.branches import find_sections
from onnxforge.runtime.expand import expand_functions
from onnxforge.runtime.optimizer_hook import optimize_for_level
from onnxforge.runtime.options import (
    ExecutionMode,
    GraphOptimizationLevel,
    ModelMetadata,
    NodeArg,
    RunOptions,
    SessionOptions,
)
from onnxforge.runtime.ortvalue import OrtValue
from onnxforge.runtime.plan import Plan, Profiler
from onnxforge.runtime.plan_builder import PlanBuilder
from onnxforge.runtime.session_build import (
    collector_paused,
    constant_initializers_before_ir4,
    has_kernel,
    header_of,
    resolve_providers,
    tune_malloc,
)
from onnxforge.runtime.threads import blas_threads
from onnxforge.runtime.typecheck import check_types

_SUBGRAPH_ATTRIBUTES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


class _InputSpec:
    """What ``run`` checks a fed value against, settled at session creation."""

    __slots__ = ("dims", "dtype", "name", "slot", "type_string")

    def __init__(self, name: str, slot: int, type_string: str, dtype: np.dtype | None, dims: list[Any] | None) -> None:
        self.name, self.slot, self.type_string, self.dtype, self.dims = name, slot, type_string, dtype, dims

    def convert(self, value: Any) -> Any:
        if self.dtype is None:  # sequences, maps, optionals go through as given
            return value
        if not isinstance(value, np.ndarray):
            if isinstance(value, (list, tuple, int, float, bool, np.generic)):
                value = np.asarray(value, dtype=self.dtype)
            else:
                raise InvalidArgument(
                    f"Input '{self.name}': expected a numpy array of {self.type_string}, got {type(value).__name__}"
                )
        if value.dtype != self.dtype and not (self.dtype == object and value.dtype.kind in "UO"):
            raise InvalidArgument(
                f"Unexpected input data type for input '{self.name}'. Actual: (tensor({value.dtype})) , "
                f"expected: ({self.type_string})"
            )
        if self.dims is not None:
            if value.ndim != len(self.dims):
                raise InvalidArgument(
                    f"Invalid rank for input: {self.name} Got: {value.ndim} Expected: {len(self.dims)} "
                    "Please fix either the inputs/outputs or the model."
                )
            wrong = [
                (i, got, want)
                for i, (got, want) in enumerate(zip(value.shape, self.dims))
                if isinstance(want, int) and got != want
            ]
            if wrong:
                lines = "".join(f" index: {i} Got: {got} Expected: {want}\n" for i, got, want in wrong)
                raise InvalidArgument(
                    f"Got invalid dimensions for input: {self.name} for the following indices\n{lines}"
                    " Please fix either the inputs/outputs or the model."
                )
        if self.dtype == object and value.dtype.kind == "U":
            value = value.astype(object)
        return value


def _as_output(value: Any) -> Any:
    """What the caller gets: an ndarray they may write to (an output can be a view of a read-only weight)."""
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        return value.copy()
    return value


def _dims(value: ir.Value) -> list[int | str | None]:
    if value.shape is None:
        return []
    return [d if isinstance(d, int) else (d.value if getattr(d, "value", None) else None) for d in value.shape]


class InferenceSession:
    """Load a model once, then ``run`` it many times, from many threads if you like."""

    def __init__(
        self,
        path_or_bytes: ModelSource,
        sess_options: SessionOptions | None = None,
        providers: Sequence[Any] | None = None,
        provider_options: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        start = time.perf_counter()
        self._sess_options = sess_options or SessionOptions()
        self._providers = resolve_providers(providers)
        self._provider_options = {name: {} for name in self._providers}
        with collector_paused():
            self._build(path_or_bytes)
        self.session_creation_seconds = time.perf_counter() - start

    # ----- building -------------------------------------------------------------------------------
    def _build(self, path_or_bytes: ModelSource) -> None:
        self._model_path = path_or_bytes if isinstance(path_or_bytes, (str, os.PathLike)) else None
        tune_malloc(self._sess_options)  # before the build's own big temporaries (folded weights) come and go
        checked = check_model(path_or_bytes, transform=lambda p: without_map_types(expand_functions(p, has_kernel)))
        proto = checked.proto
        where = str(self._model_path or "bytes")
        inferred = check_types(proto, where)
        if inferred is not None and not self._shapes_carry_over(checked.engine_proto is proto, proto):
            inferred = None

        def load() -> ir.Model:
            model = checked.to_ir(initializers_as_constants=True)
            self._apply_options(model)
            constant_initializers_before_ir4(model)
            return model

        model = optimize_for_level(
            load(),
            self._sess_options.graph_optimization_level,
            reload=load,
            inferred=None if inferred is None else inferred.graph,
        )
        # ``model`` stays a local: the session keeps the plan, not the model. onnx-ir graphs are cyclic (nodes
        # <-> values), so a kept model, and every weight it holds, would outlive ``del session`` until the next
        # full collection; without it a dropped session frees its memory at once, as onnxruntime's does.
        # The parsed protobuf holds every weight, and the plan reads them from the model (detaching it from the
        # protobuf): keep the protobuf's header only, so it can go before the plan packs the weights.
        with text_errors(proto, where):
            self._proto_meta = proto = header_of(proto)
        del load
        checked = None  # the cell ``load`` read it from: its last holder
        fuse = self._sess_options.graph_optimization_level != GraphOptimizationLevel.ORT_DISABLE_ALL
        self._plan = PlanBuilder(model.opset_imports, optimize=fuse).build(model.graph)
        if self._sess_options.execution_mode == ExecutionMode.ORT_PARALLEL:
            self._plan.sections = find_sections(self._plan.steps, [info.op_type for info in self._plan.infos])
        self._describe_io(model, proto)
        self._pruned: dict[tuple[int, ...], Plan] = {}
        self._pruned_lock = threading.Lock()
        self._profiler = Profiler() if self._sess_options.enable_profiling else None
        if self._sess_options.optimized_model_filepath:
            ir.save(model, self._sess_options.optimized_model_filepath)

    def _shapes_carry_over(self, unexpanded: bool, proto: onnx.ModelProto) -> bool:
        """Whether the shapes inferred while checking types are those of the model the optimizer gets: not
        when functions were expanded, options changed input dims or initializers, or subgraphs would need
        pairing with the inferred ones (the optimizer then infers shapes itself)."""
        options = self._sess_options
        if not unexpanded or options.free_dimension_overrides or options.initializers:
            return False
        return not any(attr.type in _SUBGRAPH_ATTRIBUTES for node in proto.graph.node for attr in node.attribute)

    def _apply_options(self, model: ir.Model) -> None:
        overrides = self._sess_options.free_dimension_overrides
        if overrides:
            for value in model.graph.inputs:
                if value.shape is not None:
                    dims = [
                        overrides.get(getattr(d, "value", None), d) if not isinstance(d, int) else d
                        for d in value.shape
                    ]
                    value.shape = ir.Shape(dims)
        for name, array in self._sess_options.initializers.items():
            target = model.graph.initializers.get(name)
            if target is None:
                target = next((v for v in model.graph.inputs if v.name == name), None)
            if target is None:
                raise InvalidArgument(f"add_initializer('{name}'): the model has no initializer or input of that name")
            target.const_value = ir.tensor(array, name=name)
            if name not in model.graph.initializers:
                model.graph.register_initializer(target)

    def _describe_io(self, model: ir.Model, proto: onnx.ModelProto) -> None:
        graph = model.graph
        proto_types = {vi.name: vi.type for vi in list(proto.graph.input) + list(proto.graph.output)}
        initializer_names = set(graph.initializers)
        self._inputs: list[NodeArg] = []
        self._overridable: list[NodeArg] = []
        self._specs: dict[str, _InputSpec] = {}
        self._required: list[str] = []
        for value, slot in zip(graph.inputs, self._plan.input_slots):
            arg = self._node_arg(value, proto_types)
            is_tensor = isinstance(value.type, ir.TensorType)
            dtype = np_dtype_for(value.dtype) if is_tensor else None
            self._specs[value.name] = _InputSpec(
                value.name, slot, arg.type, dtype, _dims(value) if arg.rank_known and is_tensor else None
            )
            if value.name in initializer_names:
                self._overridable.append(arg)
            else:
                self._inputs.append(arg)
                self._required.append(value.name)
        self._positions = {value.name: i for i, value in enumerate(graph.inputs)}
        self._defaults = [self._plan.default_for(slot) for slot in self._plan.input_slots]
        self._outputs = [self._node_arg(value, proto_types) for value in graph.outputs]
        self._output_index = {arg.name: i for i, arg in enumerate(self._outputs)}

    @staticmethod
    def _node_arg(value: ir.Value, proto_types: Mapping[str, onnx.TypeProto]) -> NodeArg:
        type_proto = proto_types.get(value.name)
        type_string = proto_type_string(type_proto) if type_proto is not None else "unknown"
        # A sequence's, a map's and an unknown-rank tensor's shape is [], as onnxruntime gives it; rank_known
        # tells an unknown-rank tensor from a scalar (the CLI's --random cannot invent a rank).
        is_tensor = isinstance(value.type, ir.TensorType) or (
            type_proto is not None and type_proto.HasField("tensor_type")
        )
        return NodeArg(
            value.name,
            type_string,
            _dims(value) if is_tensor else [],
            rank_known=not is_tensor or value.shape is not None,
        )

    # ----- the ORT API ----------------------------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_overridable_initializers(self) -> list[NodeArg]:
        return list(self._overridable)

    def get_modelmeta(self) -> ModelMetadata:
        proto = self._proto_meta
        return ModelMetadata(
            producer_name=proto.producer_name,
            graph_name=proto.graph.name,
            domain=proto.domain,
            description=proto.doc_string,
            graph_description=proto.graph.doc_string,
            version=proto.model_version,
            custom_metadata_map={p.key: p.value for p in proto.metadata_props},
        )

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_provider_options(self) -> dict[str, dict[str, Any]]:
        return {name: dict(opts) for name, opts in self._provider_options.items()}

    def set_providers(self, providers: Sequence[Any] | None = None, provider_options: Any = None) -> None:
        self._providers = resolve_providers(providers)

    def disable_fallback(self) -> None:
        """No-op: the CPU provider is the only one, so there is nothing to fall back to."""

    def enable_fallback(self) -> None:
        """No-op, see :meth:`disable_fallback`."""

    def get_session_options(self) -> SessionOptions:
        return self._sess_options

    def get_profiling_start_time_ns(self) -> int:
        return 0

    def end_profiling(self) -> str:
        if self._profiler is None:
            return ""
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        path = f"{self._sess_options.profile_file_prefix}_{stamp}.json"
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self._profiler.events, handle)
        self._profiler = Profiler()
        return path

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: RunOptions | None = None,
    ) -> list[Any]:
        plan = self._plan_for(output_names)
        feeds = list(self._defaults)
        for name, value in input_feed.items():
            spec = self._specs.get(name)
            if spec is None:
                raise InvalidArgument(f"Invalid input name: {name}. Inputs: {[a.name for a in self._inputs]}")
            feeds[self._positions[name]] = spec.convert(value)
        missing = [name for name in self._required if name not in input_feed]
        if missing:
            raise InvalidArgument(f"Required inputs ({missing}) are missing from input feed ({list(input_feed)}).")
        if run_options is not None and run_options.terminate:
            raise Fail("Exiting due to terminate flag being set to true.")
        should_stop = (lambda: run_options.terminate) if run_options is not None else None
        # NumPy warns on log(0), x/0 and the like; ORT is silent and so are we (the values follow IEEE).
        with blas_threads(self._sess_options.intra_op_num_threads), np.errstate(all="ignore"):
            results = plan.run(feeds, should_stop=should_stop, profiler=self._profiler)
        return [_as_output(r) for r in results]

    def run_with_ort_values(
        self,
        output_names: Sequence[str] | None,
        input_dict_ort_values: Mapping[str, OrtValue],
        run_options: RunOptions | None = None,
    ) -> list[OrtValue]:
        feed = {name: value.numpy() for name, value in input_dict_ort_values.items()}
        return [OrtValue(result) for result in self.run(output_names, feed, run_options)]

    def _plan_for(self, output_names: Sequence[str] | None) -> Plan:
        if not output_names:
            return self._plan
        indices = []
        for name in output_names:
            if name not in self._output_index:
                raise InvalidArgument(f"Invalid output name: {name}. Outputs: {list(self._output_index)}")
            indices.append(self._output_index[name])
        key = tuple(indices)
        plan = self._pruned.get(key)
        if plan is None:
            with self._pruned_lock:
                plan = self._pruned.setdefault(key, self._plan.pruned([self._plan.output_slots[i] for i in indices]))
        return plan
