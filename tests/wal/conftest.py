"""Fixtures of the WAL tests; helpers live in wal_helpers.py."""

from __future__ import annotations

import pathlib

import pytest


@pytest.fixture
def wal_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "wal"


@pytest.fixture
def no_failpoints(monkeypatch):
    monkeypatch.delenv("PYKV_FAILPOINTS", raising=False)
