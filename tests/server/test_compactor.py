"""--auto-compaction-mode / --auto-compaction-retention."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pykv.server.compactor import AutoCompactor
from pykv.server.config import ConfigError, parse_retention


@pytest.mark.parametrize("mode,text,expected", [
    ("periodic", "0", 0.0), ("periodic", "1", 3600.0), ("periodic", "30m", 1800.0),
    ("periodic", "1h30m", 5400.0), ("periodic", "2.5", 9000.0), ("periodic", "90s", 90.0),
    ("revision", "1000", 1000.0), ("revision", "0", 0.0),
])
def test_retention_is_read_as_etcd_reads_it(mode, text, expected):
    assert parse_retention(mode, text) == (mode, expected)


@pytest.mark.parametrize("mode,text", [("revision", "1h"), ("periodic", "soon"),
                                        ("daily", "1"), ("revision", "-5")])
def test_bad_retention_is_refused(mode, text):
    with pytest.raises(ConfigError):
        parse_retention(mode, text)


def fake_core(revision: int, compact: int = 0):
    store = SimpleNamespace(revision=revision, compact_revision=compact)
    proposed = []

    def propose(kind, body, request):
        proposed.append(request.revision)
        future = asyncio.get_running_loop().create_future()
        future.set_result(b"")
        return future

    core = SimpleNamespace(store=store, leader_id=1, member_id=1, propose=propose)
    return core, proposed


def test_revision_mode_keeps_the_last_retention_revisions():
    async def main():
        core, proposed = fake_core(revision=5000)
        compactor = AutoCompactor(core, "revision", "1000")
        assert await compactor.compact_once(0.0) == 4000
        assert await compactor.compact_once(1.0) == 0  # nothing new to compact
        core.store.revision = 5200
        assert await compactor.compact_once(2.0) == 4200
        core.leader_id = 2  # only the leader proposes compactions
        core.store.revision = 9000
        assert await compactor.compact_once(3.0) == 0
        return proposed

    assert asyncio.run(main()) == [4000, 4200]


def test_periodic_mode_compacts_to_the_revision_one_retention_ago():
    async def main():
        core, proposed = fake_core(revision=10)
        compactor = AutoCompactor(core, "periodic", "1m")
        for second in range(0, 130, 6):  # a sample every retention/10
            core.store.revision = 10 + second
            compactor.sample(float(second))
        await compactor.compact_once(130.0)
        return proposed

    # The newest sample at least 60 s old at t=130 is the one taken at t=66.
    assert asyncio.run(main()) == [76]


def test_off_by_default():
    core, _ = fake_core(revision=10)
    assert not AutoCompactor(core, "periodic", "0").enabled
