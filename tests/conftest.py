"""Shared test configuration.

Tests import pykv from this checkout (pytest's ``pythonpath = ["."]``), so
several worktrees can be tested side by side; build the C core in place first
(``pip install -e .`` or ``python setup.py build_ext --inplace``).
"""
