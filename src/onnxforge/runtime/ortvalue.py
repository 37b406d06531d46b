"""``OrtValue``: ORT's value wrapper, so code using ``ortvalue_from_numpy`` / ``run_with_ort_values`` works."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxforge._errors import InvalidArgument


class OrtValue:
    """A CPU value: a numpy array, a list (sequence), a dict (map) or None (empty optional)."""

    def __init__(self, value: Any) -> None:
        self._value = value

    @staticmethod
    def ortvalue_from_numpy(array: np.ndarray, device_type: str = "cpu", device_id: int = 0) -> OrtValue:
        if str(device_type).lower() != "cpu":
            raise InvalidArgument(f"OrtValue on device '{device_type}': only 'cpu' is available")
        return OrtValue(np.asarray(array))

    @staticmethod
    def ortvalue_from_shape_and_type(
        shape: list[int], element_type: Any, device_type: str = "cpu", device_id: int = 0
    ) -> OrtValue:
        return OrtValue(np.empty(shape, dtype=element_type))

    def numpy(self) -> Any:
        return self._value

    def is_tensor(self) -> bool:
        return isinstance(self._value, np.ndarray)

    def has_value(self) -> bool:
        return self._value is not None

    def shape(self) -> list[int]:
        return list(np.shape(self._value))

    def element_type(self) -> type:
        return np.asarray(self._value).dtype.type

    def data_type(self) -> str:
        return f"tensor({_ort_name(np.asarray(self._value).dtype)})"

    def device_name(self) -> str:
        return "cpu"


def _ort_name(dtype: np.dtype) -> str:
    names = {np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.bool_): "bool"}
    return names.get(dtype, "string" if dtype.kind in "OU" else dtype.name)
