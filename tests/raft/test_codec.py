"""The binary codecs: exact round trips, and clear errors on bad bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from pykv.raft import DecodeError
from pykv.raft.types import (
    ConfChange, ConfChangeType, ConfState, Entry, HardState, Message, MessageType, Snapshot,
    SnapshotMeta, decode_conf_change, decode_conf_state, decode_entries, decode_entry,
    decode_hard_state, decode_message, decode_snapshot_meta, encode_conf_change,
    encode_conf_state, encode_entries, encode_entry, encode_hard_state, encode_message,
    encode_snapshot_meta,
)

# The machine is shared and loaded: a slow example is not a failure.
no_deadline = settings(deadline=None)
u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
node_ids = st.integers(min_value=1, max_value=(1 << 64) - 1)
entries = st.builds(Entry, u64, u64, st.sampled_from([0, 1]), st.binary(max_size=64))
conf_states = st.lists(node_ids, unique=True, max_size=8).flatmap(
    lambda ids: st.integers(0, len(ids)).map(
        lambda k: ConfState(tuple(sorted(ids[:k])), tuple(sorted(ids[k:])))))
metas = st.builds(SnapshotMeta, u64, u64, conf_states)
snapshots = st.builds(Snapshot, metas, st.binary(max_size=256))
messages = st.builds(
    Message, st.sampled_from(list(MessageType)), u64, u64, u64, u64, u64,
    st.lists(entries, max_size=5), u64, st.none() | snapshots, st.booleans(), u64,
    st.binary(max_size=32))


@no_deadline
@given(entries)
def test_entry_round_trips(entry):
    assert decode_entry(encode_entry(entry)) == entry


@no_deadline
@given(st.lists(entries, max_size=20))
def test_entry_batch_round_trips(batch):
    assert decode_entries(encode_entries(batch)) == batch


@no_deadline
@given(st.builds(HardState, u64, u64, u64).filter(lambda hs: hs.term or not hs.commit))
def test_hard_state_round_trips(hs):
    assert decode_hard_state(encode_hard_state(hs)) == hs


@no_deadline
@given(conf_states)
def test_conf_state_round_trips(cs):
    assert decode_conf_state(encode_conf_state(cs)) == cs


@no_deadline
@given(metas)
def test_snapshot_meta_round_trips(meta):
    assert decode_snapshot_meta(encode_snapshot_meta(meta)) == meta


@no_deadline
@given(st.builds(ConfChange, st.sampled_from(list(ConfChangeType)), node_ids,
                 st.binary(max_size=32)))
def test_conf_change_round_trips(cc):
    assert decode_conf_change(encode_conf_change(cc)) == cc


@no_deadline
@given(messages)
def test_message_round_trips(m):
    assert decode_message(encode_message(m)) == m


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_truncated_or_extended_message_is_refused(m, data):
    buf = encode_message(m)
    cut = data.draw(st.integers(0, len(buf) - 1))
    with pytest.raises(DecodeError):
        decode_message(buf[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        decode_message(buf + b"\0")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_decode_error(buf):
    for decode in (decode_message, decode_entries, decode_entry, decode_hard_state,
                   decode_snapshot_meta, decode_conf_change, decode_conf_state):
        try:
            decode(buf)
        except DecodeError:
            pass


def test_unknown_version_is_named_in_the_error():
    buf = bytearray(encode_hard_state(HardState(1, 2, 3)))
    buf[0] = 9
    with pytest.raises(DecodeError, match="unknown codec version 9"):
        decode_hard_state(bytes(buf))


def test_entry_batch_with_a_lying_length_is_refused():
    buf = bytearray(encode_entries([Entry(1, 1, 0, b"abc")]))
    buf[-7] = 200  # the length field of the only entry: far beyond the input
    with pytest.raises(DecodeError, match="truncated"):
        decode_entries(bytes(buf))


def test_unknown_message_type_is_refused():
    buf = bytearray(encode_message(Message(MessageType.APP, 1, 2, 3)))
    buf[1] = 77
    with pytest.raises(DecodeError, match="unknown message type 77"):
        decode_message(bytes(buf))


def test_encoding_is_pinned():
    # A golden value: peers and WALs of other versions must read these bytes.
    assert encode_entry(Entry(2, 5, 0, b"hi")).hex() == (
        "01" "0200000000000000" "0500000000000000" "00" "6869")
    assert encode_hard_state(HardState(3, 1, 7)).hex() == (
        "01" "0300000000000000" "0100000000000000" "0700000000000000")
