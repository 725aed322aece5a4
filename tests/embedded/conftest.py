"""Fixtures for the embedded API: a fresh database per test, a manual clock."""

from __future__ import annotations

import pathlib

import pytest

import pykv


class ManualClock:
    """An injected clock for leases: time moves only when a test says so."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "data"


@pytest.fixture
def db(db_path, clock):
    database = pykv.open(db_path, clock=clock)
    yield database
    database.close()
