"""Shim package: first on PYTHONPATH under ``onnxforge exec``, it hands ``onnxruntime`` over to onnxforge."""

import sys

from onnxforge.runtime.ort import install

sys.modules[__name__] = install()
