"""Operators: the selective scan and its backends. Knows nothing of models or data."""

from .selective_scan import BACKENDS, choose_backend, export_mode, selective_scan

__all__ = ["selective_scan", "choose_backend", "export_mode", "BACKENDS"]
