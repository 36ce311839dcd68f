"""Shared helpers: a small decoder of the record protocol and a datagram
socket standing in for agentd's ingest."""

import json
import os
import socket
import struct
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
VECTORS = os.path.join(REPO, "proto", "vectors")
PROTOCOL_MD = os.path.join(REPO, "proto", "PROTOCOL.md")

TYPES = {1: "string", 2: "int64", 3: "double", 4: "bool"}


class DecodeError(Exception):
    pass


def decode(frame, max_frame=131072):
    """Decode one frame as PROTOCOL.md says; raises DecodeError(name)."""
    b = bytes(frame)
    if len(b) < 24:
        raise DecodeError("short")
    if len(b) > max_frame:
        raise DecodeError("oversized")
    if b[:2] != b"AG":
        raise DecodeError("bad_magic")
    if b[2] != 1:
        raise DecodeError("bad_version")
    if b[3] > 5:
        raise DecodeError("bad_level")
    level, flags, nfields, time_ns, dropped, msg_len = (b[3],) + struct.unpack_from("<HHQII", b, 4)
    if flags & ~1:
        raise DecodeError("bad_flags")
    if msg_len > len(b) - 24:
        raise DecodeError("truncated_message")
    p = 24 + msg_len
    fields = []
    for _ in range(nfields):
        if len(b) - p < 2:
            raise DecodeError("truncated_field")
        t, klen = b[p], b[p + 1]
        if t not in TYPES:
            raise DecodeError("bad_type")
        if klen == 0:
            raise DecodeError("bad_key")
        p += 2
        if len(b) - p < klen:
            raise DecodeError("truncated_field")
        key = b[p:p + klen]
        p += klen
        if t == 1:
            if len(b) - p < 4:
                raise DecodeError("truncated_field")
            (n,) = struct.unpack_from("<I", b, p)
            if len(b) - p - 4 < n:
                raise DecodeError("truncated_field")
            val = b[p + 4:p + 4 + n]
            p += 4 + n
        elif t == 4:
            if len(b) - p < 1:
                raise DecodeError("truncated_field")
            if b[p] > 1:
                raise DecodeError("bad_bool")
            val = b[p] == 1
            p += 1
        else:
            if len(b) - p < 8:
                raise DecodeError("truncated_field")
            (val,) = struct.unpack_from("<q" if t == 2 else "<d", b, p)
            p += 8
        fields.append((key, TYPES[t], val))
    if p != len(b):
        raise DecodeError("trailing_bytes")
    return {"level": level, "flags": flags, "time_ns": time_ns, "dropped": dropped,
            "message": b[24:24 + msg_len], "fields": fields}


class Record(dict):
    """A decoded record with str keys/values and a dict of fields."""

    @property
    def f(self):
        out = {}
        for k, t, v in self["fields"]:
            if t == "string":
                try:
                    v = v.decode("utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    pass  # not UTF-8: left as bytes
            out[k.decode()] = v
        return out

    def types(self):
        return {k.decode(): t for k, t, _ in self["fields"]}


class Receiver:
    def __init__(self, path):
        self.path = path
        self.sock = None
        self.open()

    def open(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(self.path)
        s.settimeout(2.0)
        self.sock = s

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            os.unlink(self.path)

    def raw(self):
        return self.sock.recv(262144)

    def recv(self):
        rec = Record(decode(self.raw()))
        rec["message"] = rec["message"].decode("utf-8", "surrogatepass")
        return rec

    def pending(self):
        """Everything queued now, decoded."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    out.append(Record(decode(self.sock.recv(262144))))
                except BlockingIOError:
                    break
        finally:
            self.sock.settimeout(2.0)
        return out


@pytest.fixture
def receiver(tmp_path):
    r = Receiver(str(tmp_path / "agentd.sock"))
    yield r
    if r.sock is not None:
        r.close()


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("AGENT_SOCKET", "SERVICE_NAME", "ENVIRONMENT", "SERVICE_VERSION", "LOG_TYPE",
                 "ENABLE_GLOBAL_ERROR_HANDLER", "LOG_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def client(receiver, clean_env):
    import agentlog
    c = agentlog.Client(socket_path=receiver.path)
    yield c
    c.close()


def load_vector(name):
    with open(os.path.join(VECTORS, name + ".json")) as f:
        return json.load(f)
