"""Fixtures for the MVCC store tests: a store in a temporary directory and a
manual clock for leases."""

from __future__ import annotations

import pathlib

import pytest

from pykv.mvcc import Store


class ManualClock:
    """An injected clock: time moves only when a test says so."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Applier:
    """Feeds requests to a store one batch per call, numbering entries."""

    def __init__(self, store: Store):
        self.store = store
        self.index = store.applied_index

    def batch(self):
        self.index += 1
        return self.store.write(self.index)

    def __getattr__(self, name):
        # applier.put(req) == one batch holding one op
        def one(*args, **kwargs):
            with self.batch() as w:
                return getattr(w, name)(*args, **kwargs)
        return one


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store_path(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "member" / "snap" / "db")


@pytest.fixture
def store(store_path: str, clock: ManualClock):
    st = Store.open(store_path, clock=clock, map_bytes=64 << 20)
    yield st
    st.close()


@pytest.fixture
def apply(store: Store) -> Applier:
    return Applier(store)
