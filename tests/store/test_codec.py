"""The codec: records round trip exactly; anything else is refused with a named error."""

from __future__ import annotations

import msgpack
import pytest

from coda.errors import StoreIncompatible
from coda.store import codec
from tests.store.records import ERROR, VALUE, run, step, timer


def test_records_round_trip_exactly() -> None:
    record = run("r1", state="failed", error=ERROR, value=VALUE, children=("a", "b"), parent="p", rerun_at=5.5, owner="sup-1", fence=7)
    assert codec.decode_run(codec.encode_run(record)) == record
    assert type(codec.decode_run(codec.encode_run(record)).children) is tuple
    for s in (step("r1", 3, attempt=2), step("r1", 4, ok=False), step("r1", 5, ok=None, memo_key=None, cache_key=None)):
        assert codec.decode_step("r1", s.attempt, s.seq, codec.encode_step(s)) == s
    t = timer("r1", 2, attempt=3)
    assert codec.decode_timer("r1", 3, 2, codec.encode_timer(t)) == t
    for value in (VALUE, None, b"", [1, [2.5, "x"]], {"": {}}):
        assert codec.decode_value(codec.encode_value(value)) == value


def test_every_blob_starts_with_the_codec_version() -> None:
    assert codec.CODEC_VERSION == 1
    for blob in (codec.encode_run(run("r1")), codec.encode_step(step("r1", 0)), codec.encode_value(1)):
        assert blob[0] == 1


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "is empty"),
        (b"\x07" + msgpack.packb([1]), "codec version 7 .written by a newer Coda.; this Coda reads version 1"),
        (b"\x00abc", "codec version 0;"),
        (b"\x01\xc1", "not readable"),
        (b"\x01" + msgpack.packb([1, 2, 3]), "does not have the 17 fields"),
        (b"\x01" + msgpack.packb({"run_id": "r1"}), "does not have the 17 fields"),
        (b"\x01" + msgpack.packb(["r1", "wf", {}, "exploded", 1, 0.0, None, None, None, None, 0, 0.0, None, [], {}, None, 0]), "malformed: .*state 'exploded'"),
    ],
)
def test_bad_run_blobs_are_refused(blob: bytes, message: str) -> None:
    with pytest.raises(StoreIncompatible, match=message):
        codec.decode_run(blob)


def test_a_bad_step_names_its_run_and_position() -> None:
    with pytest.raises(StoreIncompatible, match=r"step 2/9 of run 'r1' does not have the 13 fields"):
        codec.decode_step("r1", 2, 9, b"\x01" + msgpack.packb([1]))


def test_a_value_that_cannot_be_encoded_leaves_the_next_encode_intact() -> None:
    with pytest.raises(TypeError):
        codec.encode_value({"ok": [1, 2], "bad": object()})
    assert codec.decode_value(codec.encode_value({"ok": [1, 2]})) == {"ok": [1, 2]}
