"""Logging for onnxforge: one package logger whose level follows ORT's severity numbers."""

from __future__ import annotations

import logging

logger = logging.getLogger("onnxforge")

# ORT severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
_SEVERITY_TO_LEVEL = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR, 4: logging.CRITICAL}


def level_for_severity(severity: int) -> int:
    """The :mod:`logging` level for an ORT log-severity number."""
    return _SEVERITY_TO_LEVEL.get(int(severity), logging.WARNING)


def set_default_logger_severity(severity: int) -> None:
    """Set the package logger's level from an ORT severity (as ``onnxruntime.set_default_logger_severity``)."""
    logger.setLevel(level_for_severity(severity))
