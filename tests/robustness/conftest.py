"""Runs against real `pykv serve` processes are marked e2e (as under tests/e2e)."""

from __future__ import annotations

import shutil

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/robustness/test_crash_history" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def need_etcdctl():
    if shutil.which("etcdctl") is None:
        pytest.skip("etcdctl is not installed (Debian's etcd-client; scripts/test.sh installs it)")
