"""ORT's option objects: SessionOptions, RunOptions, GraphOptimizationLevel, ExecutionMode, NodeArg."""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


class SessionOptions:
    """Session-wide settings, with ORT's field names and defaults."""

    def __init__(self) -> None:
        self.graph_optimization_level: GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.intra_op_num_threads: int = 0
        self.inter_op_num_threads: int = 0
        self.execution_mode: ExecutionMode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order: ExecutionOrder = ExecutionOrder.DEFAULT
        self.optimized_model_filepath: str = ""
        self.enable_profiling: bool = False
        self.profile_file_prefix: str = "onnxruntime_profile_"
        self.log_severity_level: int = 2
        self.log_verbosity_level: int = 0
        self.logid: str = ""
        self.enable_cpu_mem_arena: bool = True
        self.enable_mem_pattern: bool = True
        self.enable_mem_reuse: bool = True
        self.use_deterministic_compute: bool = False
        self._config: dict[str, str] = {}
        self.free_dimension_overrides: dict[str, int] = {}
        self.initializers: dict[str, np.ndarray] = {}

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._config[str(key)] = str(value)

    def get_session_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise InvalidArgument(f"SessionOptions does not have configuration with key: {key}")
        return self._config[key]

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        if int(dim_value) < 0:
            raise InvalidArgument(f"free dimension override for '{dim_name}' must be >= 0, got {dim_value}")
        self.free_dimension_overrides[str(dim_name)] = int(dim_value)

    def add_initializer(self, name: str, value: Any) -> None:
        array = value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else value
        if not isinstance(array, np.ndarray):
            raise InvalidArgument(f"add_initializer('{name}'): expected a numpy array, got {type(value).__name__}")
        self.initializers[str(name)] = array


class RunOptions:
    """Per-run settings. Setting ``terminate`` from another thread stops a run between nodes."""

    def __init__(self) -> None:
        self.terminate: bool = False
        self.log_severity_level: int = 2
        self.log_verbosity_level: int = 0
        self.logid: str = ""
        self.only_execute_path_to_fetches: bool = False
        self._config: dict[str, str] = {}

    def add_run_config_entry(self, key: str, value: str) -> None:
        self._config[str(key)] = str(value)

    def get_run_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise InvalidArgument(f"RunOptions does not have configuration with key: {key}")
        return self._config[key]


class NodeArg:
    """A graph input or output as ORT describes it: name, type string and shape.

    As in onnxruntime, ``shape`` is ``[]`` both for a scalar and for a value whose rank the model does not
    declare (and for sequences and maps); ``rank_known`` (an onnxforge addition) tells the two apart.
    """

    def __init__(self, name: str, type_: str, shape: list[int | str | None], *, rank_known: bool = True) -> None:
        self.name = name
        self.type = type_
        self.shape = shape
        self.rank_known = rank_known

    def __repr__(self) -> str:
        return f"NodeArg(name='{self.name}', type='{self.type}', shape={self.shape})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeArg) and (self.name, self.type, self.shape) == (
            other.name,
            other.type,
            other.shape,
        )

    def __hash__(self) -> int:
        return hash(self.name)


class ModelMetadata:
    """What ``InferenceSession.get_modelmeta()`` returns."""

    def __init__(
        self,
        producer_name: str,
        graph_name: str,
        domain: str,
        description: str,
        graph_description: str,
        version: int,
        custom_metadata_map: dict[str, str],
    ) -> None:
        self.producer_name = producer_name
        self.graph_name = graph_name
        self.domain = domain
        self.description = description
        self.graph_description = graph_description
        self.version = version
        self.custom_metadata_map = custom_metadata_map
