"""The encoder against PROTOCOL.md and the golden frames in proto/vectors."""

import glob
import math
import os
import re
import struct

import pytest

import agentlog
from conftest import PROTOCOL_MD, VECTORS, DecodeError, decode, load_vector

VECTOR_NAMES = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(VECTORS, "*.json")))
GOOD = [n for n in VECTOR_NAMES if not n.startswith("bad_")]
BAD = [n for n in VECTOR_NAMES if n.startswith("bad_")]


def _str(v):
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    return v.encode("utf-8")


def _value(ftype, v):
    if ftype == "string":
        return _str(v)
    if ftype == "int64":
        return int(v)
    if ftype == "double":
        if isinstance(v, str):
            return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]
        return float(v)
    return bool(v)


@pytest.mark.skipif(not GOOD, reason="proto/vectors not generated yet")
@pytest.mark.parametrize("name", GOOD)
def test_vector_encodes_byte_for_byte(name):
    v = load_vector(name)
    fields = [(_str(f["key"]), f["type"], _value(f["type"], f["value"])) for f in v["fields"]]
    frame = agentlog.encode_frame(v["level"], _str(v["message"]), fields, int(v["time_ns"]),
                                  int(v["dropped"]), v["flags"])
    with open(os.path.join(VECTORS, name + ".bin"), "rb") as f:
        assert frame == f.read()


@pytest.mark.skipif(not BAD, reason="proto/vectors not generated yet")
@pytest.mark.parametrize("name", BAD)
def test_bad_vector_rejected_with_its_reason(name):
    with open(os.path.join(VECTORS, name + ".bin"), "rb") as f:
        data = f.read()
    with pytest.raises(DecodeError) as e:
        decode(data)
    assert str(e.value) == load_vector(name)["error"]


def test_frame_layout_by_hand():
    frame = agentlog.encode_frame(2, "paid", [("user_id", "string", "u-42"), ("amount", "int64", 1250),
                                              ("ratio", "double", 0.25), ("ok", "bool", True)],
                                  time_ns=1732800000123456789, dropped=3)
    expect = (b"AG\x01\x02" + struct.pack("<HHQII", 0, 4, 1732800000123456789, 3, 4) + b"paid"
              + b"\x01\x07user_id" + struct.pack("<I", 4) + b"u-42"
              + b"\x02\x06amount" + struct.pack("<q", 1250)
              + b"\x03\x05ratio" + struct.pack("<d", 0.25)
              + b"\x04\x02ok\x01")
    assert frame == expect


def test_dropped_saturates_at_u32_max():
    frame = agentlog.encode_frame(0, "", [], 0, 1 << 40)
    assert decode(frame)["dropped"] == 0xFFFFFFFF


def test_oversized_record_is_cut_at_utf8_boundary_and_flagged():
    msg = "x" * (agentlog.MAX_FRAME - 24 - 1) + "é"  # the 2-byte char straddles the limit
    frame = agentlog.encode_frame(2, msg, [("k", "string", "v")], 1, 0)
    rec = decode(frame)
    assert len(frame) == agentlog.MAX_FRAME - 1
    assert rec["flags"] == 1
    assert rec["message"] == b"x" * (agentlog.MAX_FRAME - 24 - 1)
    assert rec["fields"] == []


def test_field_that_does_not_fit_is_skipped_later_ones_kept():
    big = "y" * 100000
    frame = agentlog.encode_frame(2, "m", [("a", "string", big), ("b", "string", big), ("c", "bool", True)], 1, 0)
    rec = decode(frame)
    assert rec["flags"] == 1
    assert [k for k, _, _ in rec["fields"]] == [b"a", b"c"]
    assert len(frame) <= agentlog.MAX_FRAME


def test_bad_keys_are_skipped_and_flagged():
    frame = agentlog.encode_frame(2, "m", [("", "bool", True), ("k" * 256, "bool", True), ("k" * 255, "bool", False)], 1, 0)
    rec = decode(frame)
    assert rec["flags"] == 1
    assert [k for k, _, _ in rec["fields"]] == [b"k" * 255]


def _protocol_alias_table():
    """{name: level} and {syslog priority: level} from PROTOCOL.md's table."""
    with open(PROTOCOL_MD) as f:
        text = f.read()
    section = text.split("## Levels and aliases", 1)[1].split("\n## ", 1)[0]
    names, syslog = {}, {}
    for line in section.splitlines():
        m = re.match(r"\|\s*(TRACE|DEBUG|INFO|WARN|ERROR|FATAL) \((\d)\)\s*\|(.*)\|(.*)\|", line)
        if m:
            level = int(m.group(2))
            for name in re.findall(r"`([^`]+)`", m.group(3)):
                names[name] = level
            for prio in re.findall(r"\d", m.group(4)):
                syslog[int(prio)] = level
    return names, syslog


def test_alias_table_is_protocol_md_table():
    names, syslog = _protocol_alias_table()
    assert names and syslog
    assert agentlog.LEVEL_ALIASES == names
    assert {i: lv for i, lv in enumerate(agentlog.SYSLOG_LEVELS)} == syslog


@pytest.mark.parametrize("given,level", [
    ("warning", 3), ("WARNING", 3), ("Warn", 3), ("critical", 5), ("CRIT", 5), ("err", 4),
    ("notice", 2), ("information", 2), ("panic", 5), ("0", 5), ("3", 4), ("4", 3), ("6", 2), ("7", 1),
    (0, 0), (5, 5), ("verbose", None), ("8", None), (6, None), ("", None), (None, None),
])
def test_parse_level(given, level):
    assert agentlog.parse_level(given) == level
