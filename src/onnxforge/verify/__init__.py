"""Verification: conformance runs and side-by-side checks of transformations."""
