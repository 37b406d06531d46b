"""Kernel families. Importing this package registers every built-in kernel."""

from onnxforge.runtime.kernels import (  # noqa: F401 - imported for registration
    activation,
    conv,
    control_flow,
    elementwise,
    indexing,
    linalg,
    logic,
    normalization,
    pool,
    reduce,
    rnn,
    sequence,
    shape,
    tensor_ops,
)
