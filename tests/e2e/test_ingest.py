"""What agentd takes in: malformed datagrams are skipped, the stream socket works,
large records travel whole."""
import os

from harness import encode_frame, send_frames, send_stream, wait_count


def test_malformed_datagrams_are_skipped_and_the_rest_delivered(agentd, receiver, pg):
    a = agentd()
    good = encode_frame("good one", [("k", "v")])
    bad = [
        b"",
        b"AG",
        b"XY" + good[2:],  # bad magic
        good[:2] + b"\x02" + good[3:],  # version 2
        good[:3] + b"\x09" + good[4:],  # level 9
        good[:-1],  # truncated field
        good + b"\x00",  # trailing byte
        encode_frame("bad bool", [("b", 2, 4)]),
        encode_frame("bad type", [("t", b"x", 9)]),
    ]
    send_frames(a.sock, bad + [good])
    wait_count(pg, 1, settle=0.5)
    assert pg.rows("SELECT message, metadata->>'k' AS k FROM logs") == [{"message": "good one", "k": "v"}]
    assert a.alive()


def test_stream_socket_delivers_length_prefixed_frames(agentd, receiver, pg):
    a = agentd()
    send_stream(a.stream, [encode_frame(f"stream {i}", [("i", i)]) for i in range(3)])
    wait_count(pg, 3)
    rows = pg.rows("SELECT message, metadata FROM logs ORDER BY message")
    assert [r["message"] for r in rows] == ["stream 0", "stream 1", "stream 2"]
    assert all(r["metadata"]["pid"] == os.getpid() for r in rows)
    assert a.alive()


def test_a_64k_record_travels_whole(agentd, receiver, pg):
    a = agentd()
    big = "x" * 65536
    msg = "m" * 40000
    send_frames(a.sock, [encode_frame(msg, [("blob", big), ("stack_trace", "s" * 20000)])])
    wait_count(pg, 1)
    r = pg.rows("SELECT length(message) AS ml, length(stack_trace) AS sl, length(metadata->>'blob') AS bl, "
                "metadata ? 'truncated' AS cut FROM logs")[0]
    assert r == {"ml": 40000, "sl": 20000, "bl": 65536, "cut": False}


def test_a_bad_frame_on_the_stream_socket_does_not_close_it(agentd, receiver, pg):
    a = agentd()
    bad = b"XY" + encode_frame("x")[2:]
    send_stream(a.stream, [encode_frame("before"), bad, encode_frame("after")])
    wait_count(pg, 2, settle=0.3)
    assert sorted(r["message"] for r in pg.rows("SELECT message FROM logs")) == ["after", "before"]


def test_own_sockets_have_their_modes_and_replace_only_stale_ones(agentd, receiver, pg, workdir):
    """Without sockets passed by systemd, agentd creates its own, with the
    configured modes; it replaces a stale socket file, refuses to start over a
    live one, and never removes a file that is not a socket."""
    import socket
    import stat
    import subprocess

    import harness

    d = os.path.join(workdir, "own")
    os.makedirs(d)
    sock, stream = os.path.join(d, "in.sock"), os.path.join(d, "in.stream")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(sock)
    stale.close()  # the file stays behind, nobody listens
    a = agentd({"ingest": {"socket": sock, "stream_socket": stream, "socket_mode": "0620",
                           "stream_socket_mode": "0640"}}, name="own")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o620
    assert stat.S_IMODE(os.stat(stream).st_mode) == 0o640
    send_frames(sock, [encode_frame("through a replaced stale socket")])
    wait_count(pg, 1, settle=0.2)

    # a second agentd on the same live socket fails to start and leaves it alone
    cfg = os.path.join(d, "second.conf")
    with open(cfg, "w") as f:
        f.write(harness.render_config({"ingest": {"socket": sock, "stream_socket": ""}, "spool": {"dir": ""},
                                       "control": {"socket": ""},
                                       "upstream": {"url": receiver.url + "/logs"}}))
    r = subprocess.run([harness.AGENTD_BIN, "-c", cfg], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "another agentd" in r.stderr, r.stderr
    send_frames(sock, [encode_frame("the first one still listens")])
    wait_count(pg, 2, settle=0.2)
    assert a.alive()

    # a regular file where the socket should be is left alone
    plain = os.path.join(d, "plain")
    with open(plain, "w") as f:
        f.write("keep me")
    with open(cfg, "w") as f:
        f.write(harness.render_config({"ingest": {"socket": plain, "stream_socket": ""}, "spool": {"dir": ""},
                                       "control": {"socket": ""},
                                       "upstream": {"url": receiver.url + "/logs"}}))
    r = subprocess.run([harness.AGENTD_BIN, "-c", cfg], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stderr
    with open(plain) as f:
        assert f.read() == "keep me"
