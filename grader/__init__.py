"""An autograder for PyTorch programming assignments.

The engine (this package) knows nothing about any one assignment: assignments live in their
own folders (`assignments/<name>/`) with their checks written as pytest tests.
"""
__version__ = "0.1.0"
