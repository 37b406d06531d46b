"""``onnxforge.ort``: an ``onnxruntime``-shaped namespace. ``onnxforge.ort.install()`` activates the shim."""

import sys

from onnxforge.runtime import ort as _ort

sys.modules[__name__] = _ort
