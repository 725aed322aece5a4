"""Protocol scenarios as text transcripts (STYLE habit 4, as etcd-io/raft's
datadriven interaction tests).

Each file in ``testdata/`` is a list of commands, each followed by ``----``
and the output expected from it, then a blank line. Commands:

- ``add-nodes 3 [learners=(4)] [pre-vote=false] [check-quorum=false]``:
  a bootstrapped cluster (nodes 1..3).
- ``campaign 1``, ``propose 1 data``, ``transfer-leader 1 3``,
  ``read-index 1 ctx``, ``add-learner 1 4``, ``add-node 1 4``,
  ``remove-node 1 3``: the RawNode input of that name on node 1.
- ``tick 1 [n]``: n ticks (default 1) of node 1.
- ``stabilize``: handle Readies and deliver messages until quiet; prints
  every Ready's hard state, entries, committed entries and messages.
- ``deliver [drop=(3)]``: deliver the queued messages once, dropping those
  to the listed nodes.
- ``isolate 3`` / ``heal``: cut node 3 off the network / reconnect all.
- ``status 1``: role, term, leader, commit; progress when leader.
- ``raft-log 1``: the entries of node 1's log.

Regenerate the expected outputs with ``PYKV_REWRITE=1 pytest
tests/raft/test_interaction.py`` and review the diff.
"""

from __future__ import annotations

import os
import pathlib
import re

import pytest

from pykv.raft import ConfChange, ConfChangeType, Entry, EntryType, Message, MessageType, Role
from pykv.raft.types import decode_conf_change

from .harness import Cluster

TESTDATA = pathlib.Path(__file__).parent / "testdata"
REWRITE = os.environ.get("PYKV_REWRITE") == "1"


def _fmt_entry(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        cc = decode_conf_change(e.data)
        return f"{e.term}/{e.index} {ConfChangeType(cc.type).name} {cc.node_id}"
    return f"{e.term}/{e.index} {e.data.decode()!r}"


def _fmt_message(m: Message) -> str:
    parts = [f"{m.from_}->{m.to} {MessageType(m.type).name} term={m.term}"]
    if m.type in (MessageType.APP, MessageType.VOTE, MessageType.PRE_VOTE) or m.reject:
        parts.append(f"log={m.log_term}/{m.index}")
    elif m.index:
        parts.append(f"index={m.index}")
    if m.commit:
        parts.append(f"commit={m.commit}")
    if m.reject:
        parts.append(f"rejected(hint={m.reject_hint})")
    if m.entries:
        parts.append("entries=[" + ", ".join(_fmt_entry(e) for e in m.entries) + "]")
    if m.snapshot is not None:
        parts.append(f"snapshot={m.snapshot.meta.term}/{m.snapshot.meta.index}")
    if m.context:
        parts.append(f"ctx={m.context.decode()!r}")
    return " ".join(parts)


class Transcript:
    def __init__(self) -> None:
        self.c: Cluster | None = None
        self.out: list[str] = []

    def _stabilize(self) -> None:
        c = self.c
        for _ in range(100):
            moved = False
            for node_id in sorted(c.nodes):
                while c.nodes[node_id].has_ready():
                    self._ready(node_id)
                    moved = True
            if c.queue:
                self.out.append("> delivering " + str(len(c.queue)) + " messages")
                c.deliver()
                moved = True
            if not moved:
                return
        raise AssertionError("did not stabilize")

    def _ready(self, node_id: int) -> None:
        c = self.c
        node = c.nodes[node_id]
        # Peek at what process_ready will handle, for the trace.
        raft = node.raft
        log = raft.log
        entries = log.unstable.next_entries()
        committed = log.next_committed_entries()
        hard = raft.hard_state()
        soft = raft.soft_state()
        messages = c.process_ready(node_id)
        self.out.append(f"> {node_id} handling Ready")
        self.out.append(f"  state: {Role(soft[1]).name} lead={soft[0]}")
        self.out.append(f"  hard state: term={hard.term} vote={hard.vote} commit={hard.commit}")
        if entries:
            self.out.append("  entries: " + ", ".join(map(_fmt_entry, entries)))
        if committed:
            self.out.append("  committed: " + ", ".join(map(_fmt_entry, committed)))
        for m in messages:
            self.out.append("  " + _fmt_message(m))

    def run(self, line: str) -> str:
        self.out = []
        words = line.split()
        cmd, args = words[0], words[1:]
        opts = dict(a.split("=", 1) for a in args if "=" in a)
        pos = [a for a in args if "=" not in a]
        c = self.c
        if cmd == "add-nodes":
            learners = [int(x) for x in re.findall(r"\d+", opts.get("learners", ""))]
            config = {}
            if opts.get("pre-vote") == "false":
                config["pre_vote"] = False
            if opts.get("check-quorum") == "false":
                config["check_quorum"] = False
            self.c = Cluster(range(1, int(pos[0]) + 1), learners=learners, **config)
            return "ok"
        node = c.nodes[int(pos[0])] if pos else None
        if cmd == "campaign":
            node.campaign()
        elif cmd == "propose":
            node.propose(pos[1].encode())
        elif cmd == "transfer-leader":
            node.transfer_leader(int(pos[1]))
        elif cmd == "read-index":
            node.read_index(pos[1].encode())
        elif cmd in ("add-learner", "add-node", "remove-node"):
            kind = {"add-learner": ConfChangeType.ADD_LEARNER_NODE,
                    "add-node": ConfChangeType.ADD_NODE,
                    "remove-node": ConfChangeType.REMOVE_NODE}[cmd]
            node.propose_conf_change(ConfChange(kind, int(pos[1])))
        elif cmd == "tick":
            c.tick(int(pos[0]), int(pos[1]) if len(pos) > 1 else 1)
        elif cmd == "stabilize":
            self._stabilize()
        elif cmd == "deliver":
            drop = {int(x) for x in re.findall(r"\d+", opts.get("drop", ""))}
            for m in list(c.queue):
                self.out.append(("  dropped " if m.to in drop else "  ") + _fmt_message(m))
            c.deliver(lambda m: m.to not in drop)
        elif cmd == "isolate":
            c.isolate(int(pos[0]))
        elif cmd == "heal":
            c.heal()
        elif cmd == "status":
            st = node.status()
            self.out.append(f"{st.role.name} term={st.term} lead={st.leader} "
                            f"commit={st.commit} applied={st.applied}")
            for node_id, pr in sorted(st.progress.items()):
                self.out.append(f"  {node_id}: {pr.state.name} match={pr.match} next={pr.next}"
                                + (" learner" if pr.is_learner else ""))
        elif cmd == "raft-log":
            log = node.raft.log
            for e in log.slice(log.first_index(), log.last_index() + 1):
                self.out.append(_fmt_entry(e))
        elif cmd == "read-states":
            for rs in c.read_states[int(pos[0])]:
                self.out.append(f"index={rs.index} ctx={rs.request_ctx.decode()!r}")
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return "\n".join(self.out) if self.out else "ok"


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: pathlib.Path):
    text = path.read_text()
    transcript = Transcript()
    rewritten = []
    for block in re.split(r"\n\n(?=\S)", text.strip()):
        lines = block.split("\n")
        comments = []
        while lines and lines[0].startswith("#"):
            comments.append(lines.pop(0))
        if not lines:
            rewritten.append("\n".join(comments))
            continue
        cmd = lines[0]
        assert len(lines) > 1 and lines[1] == "----", f"{path.name}: missing ---- after {cmd!r}"
        expected = "\n".join(lines[2:])
        got = transcript.run(cmd)
        if not REWRITE:
            assert got == expected, f"{path.name}: {cmd}"
        rewritten.append("\n".join(comments + [cmd, "----", got]))
    if REWRITE:
        path.write_text("\n\n".join(rewritten) + "\n")
