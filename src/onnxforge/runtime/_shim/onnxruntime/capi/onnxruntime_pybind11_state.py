"""Shim: ORT's exception classes are onnxforge's."""

import sys

import onnxforge.runtime.ort as _ort

_ort.install()
sys.modules[__name__] = _ort.capi.onnxruntime_pybind11_state
