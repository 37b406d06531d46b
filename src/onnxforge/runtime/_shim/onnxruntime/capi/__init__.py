"""Shim: ``onnxruntime.capi`` is onnxforge's (see the package's ``__init__``)."""

import onnxforge.runtime.ort as _ort

_ort.install()
onnxruntime_pybind11_state = _ort.capi.onnxruntime_pybind11_state
