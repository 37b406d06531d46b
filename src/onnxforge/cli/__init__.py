"""The ``onnxforge`` command line: ``demo``, ``run``, ``info`` and ``exec`` (see :mod:`onnxforge.cli.main`)."""
