"""Thin helpers over onnx-ir: safe loading and saving, dtypes and ORT-style type strings."""

from onnxforge.ir.dtypes import np_dtype_for, onnx_type_string
from onnxforge.ir.load import load_model, load_model_proto

__all__ = ["load_model", "load_model_proto", "np_dtype_for", "onnx_type_string"]
