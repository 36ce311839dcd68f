"""Hostile input: malformed datagrams at rate, forged origin fields, records at
every bound, hostile values in typed fields, abuse of the stream and control
sockets. A hostile sender costs counted records at worst, never the daemon, and
never a batch refused by the server."""
import json
import os
import random
import socket
import struct
import subprocess
import threading
import time

import pytest

import harness
from harness import T_BOOL, T_STRING, encode_frame, send_frames, wait_count, wait_for

AGENTCTL = os.path.join(harness.BUILD, "bin", "agentctl")

# ---- the codec's rules (proto/PROTOCOL.md), to know what each input must give --------

HDR = 24


def classify(f, max_bytes):
    """What agentd must do with datagram f: "ok" or the malformed reason it counts."""
    n = len(f)
    if n > max_bytes:
        return "oversized_datagram"
    if n < HDR:
        return "short"
    if f[0] != 0x41 or f[1] != 0x47:
        return "bad_magic"
    if f[2] != 1:
        return "bad_version"
    if f[3] > 5:
        return "bad_level"
    flags, nfields = struct.unpack_from("<HH", f, 4)
    if flags & ~1:
        return "bad_flags"
    msg_len = struct.unpack_from("<I", f, 20)[0]
    if msg_len > n - HDR:
        return "truncated_message"
    q = HDR + msg_len
    for _ in range(nfields):
        if n - q < 2:
            return "truncated_field"
        t, klen = f[q], f[q + 1]
        if t < 1 or t > 4:
            return "bad_type"
        if klen == 0:
            return "bad_key"
        q += 2
        if n - q < klen:
            return "truncated_field"
        q += klen
        if t == T_STRING:
            if n - q < 4 or n - q - 4 < struct.unpack_from("<I", f, q)[0]:
                return "truncated_field"
            vsize = 4 + struct.unpack_from("<I", f, q)[0]
        elif t == T_BOOL:
            vsize = 1
            if n - q >= 1 and f[q] > 1:
                return "bad_bool"
        else:
            vsize = 8
        if n - q < vsize:
            return "truncated_field"
        q += vsize
    return "ok" if q == n else "trailing_bytes"


# ---- talking to agentd ------------------------------------------------------------------

def sockets_ready(a):
    """The harness waits for the ingest socket only; the stream and control sockets follow it."""
    wait_for(lambda: all(os.path.exists(p) for p in (a.stream, a.ctl)), 10,
             what="agentd's stream and control sockets")
    return a


def status(a):
    """agentd's status object, from `agentctl status --json` when it is built, else the socket."""
    sockets_ready(a)
    if os.access(AGENTCTL, os.X_OK):
        r = subprocess.run([AGENTCTL, "-s", a.ctl, "status", "--json"], capture_output=True, text=True,
                           timeout=30 * harness.SCALE)
        assert r.returncode == 0, f"agentctl status: {r.returncode} {r.stderr}"
        return json.loads(r.stdout)
    j = harness.ctl_request(a.ctl, {"cmd": "status"})
    assert j.get("ok") is True, j
    return j


def malformed(a):
    return status(a)["malformed"]


class Sender:
    """A non-blocking datagram sender that waits when agentd's queue is full and counts
    those refusals (EAGAIN), so that every datagram is handed over exactly once."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.s.connect(path)
        self.s.setblocking(False)
        self.refusals = 0

    def send(self, b):
        while True:
            try:
                self.s.send(b)
                return
            except BlockingIOError:
                self.refusals += 1
                time.sleep(0.0005)

    def close(self):
        self.s.close()


def no_server_errors(receiver):
    wait_for(lambda: all(q["status"] is not None for q in receiver.requests()), 10,
             what="the receiver to answer every request")
    bad = [(q["status"], q["error"]) for q in receiver.requests() if q["status"] != 200]
    assert not bad, f"the server refused batches: {bad[:3]}"


# ---- malformed datagrams at rate -------------------------------------------------------

def base_frames(rng):
    """Real frames to cut and corrupt (their messages never start with "valid-")."""
    out = []
    for i in range(40):
        fields = [("service", f"svc{i}"), ("user_id", rng.randrange(1 << 40)), ("ratio", rng.random()),
                  ("ok", bool(i & 1)), ("trace_id", "%032x" % rng.getrandbits(128))]
        fields += [(f"k{j}", "v" * rng.randrange(0, 40)) for j in range(rng.randrange(0, 6))]
        out.append(encode_frame(f"hostile base {i} " + "m" * rng.randrange(0, 200), fields,
                                level=rng.randrange(6)))
    return out


STRUCT_OFFSETS = list(range(0, 8)) + list(range(20, 24))


def flip(rng, f):
    b = bytearray(f)
    for _ in range(rng.randrange(1, 4)):
        if rng.random() < 0.6:
            pos = rng.choice(STRUCT_OFFSETS)
        else:
            pos = rng.randrange(len(b))
        b[pos] ^= 1 << rng.randrange(8)
    return bytes(b)


def hostile_datagrams(rng, n, max_bytes):
    """n certainly-counted inputs, with the reason (or "ok") each must give."""
    bases = base_frames(rng)
    kinds = [("empty", 5000), ("random_short", 15000), ("random", 20000), ("truncated", 25000),
             ("bitflip", 30000), ("header", 4800), ("oversized", 200)]
    assert sum(k[1] for k in kinds) == n
    out = []
    for kind, count in kinds:
        for _ in range(count):
            if kind == "empty":
                d = b""
            elif kind == "random_short":
                d = rng.randbytes(rng.randrange(1, HDR))
            elif kind == "random":
                d = rng.randbytes(rng.randrange(HDR, 600))
            elif kind == "truncated":
                f = rng.choice(bases)
                d = f[:rng.randrange(0, len(f))]
            elif kind == "bitflip":
                d = flip(rng, rng.choice(bases))
            elif kind == "header":
                f = bytearray(rng.choice(bases))
                which = rng.randrange(7)
                if which == 0:
                    f[2] = rng.choice([0, 2, 3, 255])  # version
                elif which == 1:
                    f[3] = rng.randrange(6, 256)  # level
                elif which == 2:
                    f[4:6] = struct.pack("<H", rng.randrange(1, 1 << 15) << 1)  # reserved flag bits
                elif which == 3:
                    f = bytearray(encode_frame("bt", [("k", b"\x00" * 8, rng.choice([0, 5, 9, 200]))]))
                elif which == 4:
                    f = bytearray(encode_frame("bk", [("x", 1)]))
                    f[HDR + 2 + 1] = 0  # key length 0
                    f = f[:HDR + 2 + 1 + 1] + f[HDR + 2 + 1 + 1 + 1:]
                elif which == 5:
                    f = bytearray(encode_frame("bb", [("b", rng.randrange(2, 256), T_BOOL)]))
                else:
                    f += rng.randbytes(rng.randrange(1, 9))  # trailing bytes
                d = bytes(f)
            else:
                d = rng.randbytes(rng.randrange(max_bytes + 1, max_bytes + 4096))
            out.append((classify(d, max_bytes), d))
    return out


def test_100k_malformed_datagrams_among_10k_valid_records(agentd, receiver, pg):
    max_bytes = 16384
    a = agentd({"ingest": {"max_record_bytes": "16K"}})
    rng = random.Random(9)
    bad = hostile_datagrams(rng, 100_000, max_bytes)
    expected = {}
    for reason, _ in bad:
        expected[reason] = expected.get(reason, 0) + 1
    still_valid = expected.pop("ok", 0)
    valid = [encode_frame(f"valid-{i}", [("i", i), ("service", "hostile")]) for i in range(10_000)]
    stream = [d for _, d in bad] + valid
    rng.shuffle(stream)

    snd = Sender(a.sock)
    t0 = time.monotonic()
    for d in stream:
        snd.send(d)
    secs = time.monotonic() - t0
    snd.close()
    print(f"sent {len(stream)} datagrams in {secs:.1f} s, {snd.refusals} EAGAIN refusals (retried); "
          f"{still_valid} corrupted frames still decode validly; expected malformed by reason: {expected}")

    wait_count(pg, 10_000, where="message LIKE 'valid-%'", timeout=60)
    wait_count(pg, 10_000 + still_valid, timeout=30, settle=1.0)
    assert pg.scalar("SELECT count(DISTINCT message) FROM logs WHERE message LIKE 'valid-%'") == 10_000
    m = malformed(a)
    got = {k: v for k, v in m["by_reason"].items() if v}
    assert got == expected, f"malformed counters {got}, expected {expected}"
    assert m["total"] == sum(expected.values())
    assert a.alive()
    no_server_errors(receiver)


# ---- trusted origin fields ----------------------------------------------------------------

FORGED = [("pid", 1), ("uid", 0), ("gid", 0), ("process", "systemd"), ("host", "evil.example"),
          ("truncated", True)]


def test_a_client_cannot_forge_its_origin(agentd, receiver, pg):
    a = sockets_ready(agentd({"agentd": {"hostname": "trusted-host"}}))
    send_frames(a.sock, [encode_frame("forged dgram", FORGED)])
    harness.send_stream(a.stream, [encode_frame("forged stream", FORGED)])
    wait_count(pg, 2)
    for r in pg.rows("SELECT message, metadata FROM logs"):
        m = r["metadata"]
        assert (m["pid"], m["uid"], m["gid"], m["process"], m["host"]) == \
            (os.getpid(), os.getuid(), os.getgid(), harness.comm(), "trusted-host"), (r["message"], m)
        assert (m["client_pid"], m["client_uid"], m["client_gid"], m["client_process"], m["client_host"]) == \
            (1, 0, 0, "systemd", "evil.example"), m
        assert m.get("client_truncated") is True and "truncated" not in m, m


UNPRIVILEGED_SENDER = r"""
import array, os, socket, struct, sys
path, frame = sys.argv[1], bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(path)
forged = struct.pack("iII", 1, 0, 0)
try:
    s.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, forged)])
    print("forged-accepted")
except PermissionError:
    print("forged-refused")
s.send(frame)
print(os.getpid())
"""


@pytest.mark.skipif(not harness.is_root(), reason="needs root to drop to an unprivileged user")
def test_an_unprivileged_sender_cannot_pass_forged_credentials(agentd, receiver, pg, workdir):
    a = agentd()
    os.chmod(workdir, 0o711)
    os.chmod(a.dir, 0o711)
    frame = encode_frame("from nobody", [("uid", 0), ("pid", 1)])

    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    r = subprocess.run([harness.PYTHON, "-c", UNPRIVILEGED_SENDER, a.sock, frame.hex()], capture_output=True,
                       text=True, timeout=30, preexec_fn=drop, cwd="/")
    assert r.returncode == 0, r.stderr
    verdict, pid = r.stdout.split()
    assert verdict == "forged-refused", "the kernel let an unprivileged process claim pid 1 / uid 0"
    wait_count(pg, 1, settle=0.5)
    m = pg.rows("SELECT metadata FROM logs")[0]["metadata"]
    assert (m["pid"], m["uid"], m["gid"]) == (int(pid), 65534, 65534), m
    assert (m["client_pid"], m["client_uid"]) == (1, 0), m


# ---- bounds and hostile values --------------------------------------------------------------

def sized(target, fields=(), prefix="size"):
    """A frame of exactly target bytes (the message is padded)."""
    base = encode_frame(prefix, fields)
    assert len(base) <= target, (len(base), target)
    return encode_frame(prefix + "x" * (target - len(base)), fields)


def bound_records():
    """(name, frame) pairs: every size bound, hostile typed values, invalid UTF-8 everywhere.
    Each is a valid frame, so each must be stored."""
    big = harness.AP_MAX_FRAME if hasattr(harness, "AP_MAX_FRAME") else 131072
    recs = [
        ("header only", struct.pack("<2sBBHHQII", b"AG", 1, 2, 0, 0, 0, 0, 0)),  # 24 bytes, empty message
        ("time extremes", encode_frame("time max", time_ns=(1 << 64) - 1)),
        ("time one", encode_frame("time one ns", time_ns=1)),
        ("max frame", sized(big, [("k", "v")], "maxframe")),
        ("max frame minus one", sized(big - 1, [], "maxframe-1")),
        ("truncated flag", encode_frame("cut by the shim", flags=1)),
        ("dropped max", encode_frame("dropped max", dropped=(1 << 32) - 1)),
        ("key 255", encode_frame("key 255", [("k" * 255, "v"), ("\xff" * 85, "w")])),
        ("10000 keys", encode_frame("ten thousand keys", [(f"k{i}", True) for i in range(10_000)])),
        ("32762 same key", encode_frame("max fields",
                                        [("a", i & 1, T_BOOL) for i in range((big - HDR - 20) // 4)])),
    ]
    # columns at their length bound, one above, in code points of 1, 2 and 4 bytes
    for col, n in (("service", 100), ("service_version", 50), ("trace_id", 32), ("user_id", 255),
                   ("session_id", 100), ("error_type", 200), ("path", 500), ("action_type", 50),
                   ("function_name", 300), ("file_path", 1000)):
        for ch in ("a", "é", "\U0001F600"):
            recs.append((f"{col} {n}", encode_frame(f"bound {col}", [(col, ch * n)])))
            recs.append((f"{col} {n + 1}", encode_frame(f"bound {col} over", [(col, ch * (n + 1))])))
    json_like = '{"level":"ERROR","metadata":{"x":[1,2,{"y":null}]},"count":1e999}'
    hostile = [
        ("duration json", [("duration_ms", json_like * 500)]),
        ("duration nested", [("duration_ms", "[" * 60000)]),
        ("duration huge", [("duration_ms", 1e300)]),
        ("duration nan", [("duration_ms", float("nan"))]),
        ("duration inf", [("duration_ms", float("-inf"))]),
        ("duration max", [("duration_ms", 9999999.999)]),
        ("duration over", [("duration_ms", 10000000.0)]),
        ("duration int64", [("duration_ms", -(1 << 63))]),
        ("user_id int", [("user_id", -(1 << 63))]),
        ("user_id double", [("user_id", 1.5e308)]),
        ("user_id bool", [("user_id", True)]),
        ("created_at string", [("created_at", json_like)]),
        ("created_at double", [("created_at", 1e308)]),
        ("created_at int", [("created_at", (1 << 63) - 1)]),
        ("level json", [("level", json_like)]),
        ("level int", [("level", 99)]),
        ("level double", [("level", float("nan"))]),
        ("metadata string", [("metadata", json_like * 1000)]),
        ("metadata int", [("metadata", 7)]),
        ("message key", [("message", "a field called message")]),
        ("method", [("method", "get"), ("log_type", "backend"), ("environment", "PRODUCTION")]),
        ("escapes", [("k\"\\\n", "\"\\\b\f\n\r\t\x01\x1f\x7f</script>\u2028\u2029")]),
    ]
    for name, fields in hostile:
        recs.append((name, encode_frame(f"hostile {name}", fields)))
    bad_utf8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x00", b"ok\x00nul",
                b"\xf8\x88\x80\x80\x80", b"\xc3"]
    for i, bad in enumerate(bad_utf8):
        fields = [(b"key" + bad, b"val" + bad), (b"service", bad * 3), (b"level", bad), (b"user_id", bad),
                  (b"trace_id", bad * 2), (b"method", bad), (bad, b"v"), (b"client_" + bad, bad)]
        recs.append((f"utf8 {i}", encode_frame(b"msg " + bad + b" end", fields, level=i % 6)))
    return recs


def test_records_at_every_bound_and_hostile_values_are_stored_never_refused(agentd, receiver, pg):
    a = agentd({"batch": {"max_records": 25}})
    recs = bound_records()
    big = 131072
    over = sized(big + 1, [], "over")  # one byte above max_record_bytes
    sizes = [len(f) for _, f in recs]
    assert max(sizes) == big
    before = malformed(a)["by_reason"]
    send_frames(a.sock, [f for _, f in recs] + [over])
    wait_count(pg, len(recs), timeout=60, settle=1.0)
    m = malformed(a)
    assert m["by_reason"]["oversized_datagram"] == before["oversized_datagram"] + 1
    assert m["total"] == 1, m
    no_server_errors(receiver)
    st = status(a)
    assert st["dead_letters"] == 0, "a valid record was refused by the server"
    mapped = st["mapped"]
    assert mapped["invalid_utf8"] > 0 and mapped["moved"] > 0, mapped
    row = pg.rows("SELECT metadata FROM logs WHERE message = 'ten thousand keys'")[0]["metadata"]
    assert all(row[f"k{i}"] is True for i in range(10_000))
    row = pg.rows("SELECT service, metadata FROM logs WHERE message = 'bound service' AND "
                  "length(service) = 100 LIMIT 1")
    assert row, "a 100-character service stays in its column"
    over = pg.rows("SELECT service, metadata->>'service' AS ms FROM logs WHERE message = 'bound service over'")
    assert len(over) == 3 and all(r["service"] == "unknown" and len(r["ms"]) == 101 for r in over), over
    assert a.alive()


# ---- the stream socket ------------------------------------------------------------------------

def test_stream_socket_junk_and_slow_writers(agentd, receiver, pg):
    a = sockets_ready(agentd())
    before = malformed(a)["by_reason"]["stream_framing"]
    junk = 0
    rng = random.Random(7)
    for _ in range(20):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(a.stream)
            b = rng.randbytes(rng.randrange(4, 2000))
            if b[:4] != b"\x00\x00\x00\x00" and 0 < struct.unpack("<I", b[:4])[0] <= 131072:
                b = b"\xff\xff\xff\xff" + b  # certainly a bad prefix
            s.sendall(b)
            junk += 1
    frames = [encode_frame(f"slow {i}", [("i", i)]) for i in range(3)]
    data = b"".join(struct.pack("<I", len(f)) + f for f in frames)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(a.stream)
        for i in range(len(data)):  # one byte at a time
            s.send(data[i:i + 1])
            if i % 16 == 0:
                time.sleep(0.001)
    wait_count(pg, 3, settle=0.5)
    wait_for(lambda: malformed(a)["by_reason"]["stream_framing"] == before + junk, 10,
             what="every junk connection counted as a framing error")
    assert a.alive()


# ---- the control socket ----------------------------------------------------------------------

def recv_all(s, timeout=5.0):
    s.settimeout(timeout * harness.SCALE)
    buf = b""
    try:
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            buf += d
    except (socket.timeout, ConnectionResetError):
        pass
    return buf


def test_control_socket_random_bytes_and_slow_writers(agentd, receiver, pg):
    a = sockets_ready(agentd())
    rng = random.Random(3)
    for i in range(30):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(a.ctl)
            n = rng.choice([1, 100, 4095, 4096, 4097, 20000])
            b = rng.randbytes(n)
            if i % 3 == 0:
                b = b.replace(b"\n", b"") + b"\n"
            try:
                s.sendall(b)
                s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                continue  # agentd closed it already: fine
            out = recv_all(s)
            for line in out.splitlines():
                j = json.loads(line)
                assert j.get("ok") is False and j.get("error"), j
    # a slow but well-formed writer is served
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(a.ctl)
        for ch in b'{"cmd": "status"}\n':
            s.send(bytes([ch]))
            time.sleep(0.02)
        line = recv_all(s, 2).split(b"\n", 1)[0]
        assert json.loads(line)["ok"] is True
    # stalled writers are cut off; meanwhile others are served and ingest goes on
    stalled = []
    for _ in range(5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(a.ctl)
        s.send(b'{"cmd":')
        stalled.append(s)
    send_frames(a.sock, [encode_frame(f"during stall {i}") for i in range(100)])
    assert "received" in status(a)
    wait_count(pg, 100)
    for s in stalled:
        out = recv_all(s, 15)
        assert b"idle" in out or out == b"", out
        s.close()
    assert a.alive()


def test_control_client_that_never_reads(agentd, receiver, pg):
    a = sockets_ready(agentd())
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(a.ctl)
    s.setblocking(False)
    sent = 0
    req = b'{"cmd":"metrics"}\n' * 64
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            sent += s.send(req)
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break  # agentd gave up on it
    # agentd is not blocked by it: records flow and other clients are answered
    send_frames(a.sock, [encode_frame(f"while not reading {i}") for i in range(500)])
    wait_count(pg, 500)
    assert "received" in status(a)
    wait_for(lambda: status(a)["control"]["clients"] <= 1, 15, what="the non-reading client to be dropped")
    s.close()
    assert a.alive()


def open_many(path, n, first=None):
    """n connections, all open at once; a full listen backlog (EAGAIN) is waited out.
    first: sent on each as soon as it is connected (agentd drops a client
    that sends nothing for 10 s)."""
    socks = []
    deadline = time.monotonic() + 30 * harness.SCALE
    while len(socks) < n:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10 * harness.SCALE)
        try:
            s.connect(path)
        except BlockingIOError:
            s.close()
            assert time.monotonic() < deadline, f"only {len(socks)} of {n} connections accepted"
            time.sleep(0.005)
            continue
        if first is not None:
            s.sendall(first)
        socks.append(s)
    return socks


def test_1000_control_connections_at_once(agentd, receiver, pg, workdir):
    a = sockets_ready(agentd({"control": {"max_clients": 1024}}))
    stop = threading.Event()
    sent = [0]

    def ingest():
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(a.sock)
            while not stop.is_set() and sent[0] < 3000:
                s.send(encode_frame(f"under load {sent[0]}"))
                sent[0] += 1
                time.sleep(0.0005)
    t = threading.Thread(target=ingest)
    t.start()
    try:
        socks = open_many(a.ctl, 1000, first=b'{"cmd":"status"}\n')
        answered = 0
        for s in socks:
            if harness.read_reply(s).get("ok") is True:
                answered += 1
            s.close()
        assert answered == 1000
        # the default bound: 16 served, the rest told "too many clients" and closed
        a2 = agentd({"spool": {"dir": os.path.join(workdir, "spool2")}}, name="a2")
        socks = open_many(sockets_ready(a2).ctl, 1000)
        busy = 0
        for s in socks[16:]:
            out = recv_all(s, 5)
            if b"too many clients" in out:
                busy += 1
        assert busy == 984, busy
        for s in socks:
            s.close()
        wait_for(lambda: status(a2)["control"]["clients"] <= 1, 10, what="the clients to be gone")
        assert status(a2)["control"]["busy"] == 984
    finally:
        stop.set()
        t.join()
    wait_count(pg, sent[0], where="message LIKE 'under load %'", timeout=30)
    assert a.alive()
