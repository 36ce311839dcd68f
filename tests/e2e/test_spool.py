"""The spool end to end: outages, shutdown, poison records, torn segments, a full
disk and SIGKILL with `[spool] mode = always`. Every test counts the rows in
PostgreSQL: none may be missing; duplicates (allowed by at-least-once) are
counted and printed as "spool figures: ..." (shown with pytest -rA or -s).

"The upstream is down" means agentd's url points at a port nobody listens on;
it "comes back" when a receiver of our own (the `upstream` fixture) starts on
that very port, so agentd finds it by itself, without a reload.

The long outage runs 20 s here; test_spool_soak.py runs it for 60 s when SOAK=1.
"""
import glob
import json
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import time

import pytest

import harness
from harness import Receiver, agent_flood, encode_frame, send_frames, wait_for

AGENTCTL = os.path.join(harness.BUILD, "bin", "agentctl")
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
FAST_RETRY = {"retry": {"initial_backoff_ms": 100, "max_backoff_ms": 1000}}

ENT_HDR = struct.Struct("<IIIIqII")  # spool.c struct ent_hdr: magic, len, nrecords, reserved, time_ns, crc, pad
ENT_MAGIC = 0x50534741
REC_HDR = 36  # record.h struct rec_hdr: len, flags, origin {pid, uid, gid, comm[16]}
FRAME_HDR = struct.Struct("<2sBBHHQII")  # PROTOCOL.md version-1 frame header


# ---- helpers ------------------------------------------------------------------

def figure(text):
    """A figure for the report (duplicates, memory): printed, shown with -rA / -s."""
    print(f"spool figures: {text}")


def url_of(port):
    return f"http://127.0.0.1:{port}/logs"


@pytest.fixture
def upstream(pg, workdir):
    """Factory: upstream(port) starts a receiver of our own on that port; all are stopped at teardown."""
    started = []

    def start(port):
        d = os.path.join(workdir, f"upstream{len(started)}")
        os.makedirs(d, exist_ok=True)
        r = Receiver(pg, d).start(port=port)
        started.append(r)
        return r
    yield start
    for r in started:
        r.stop()


def distinct(pg, where="true"):
    return pg.scalar(f"SELECT count(DISTINCT message) FROM logs WHERE {where}")


def arrive(pg, n, where="true", timeout=30.0, settle=1.0):
    """Wait until the n distinct records matching `where` are all in; return the rows (with duplicates)."""
    last = [0]

    def done():
        last[0] = distinct(pg, where)
        return last[0] >= n
    try:
        wait_for(done, timeout, interval=0.25, what=f"{n} distinct records where {where}")
    except AssertionError as e:
        raise AssertionError(f"{e}: {last[0]} arrived, {n - last[0]} missing") from None
    time.sleep(settle)
    rows, d = pg.count(where), distinct(pg, where)
    assert d == n, f"{d} distinct records where {where}, {n} were sent"
    return rows


def status(a):
    """agentctl status --json as a dict, or None when agentctl or the control socket is not there."""
    if not os.access(AGENTCTL, os.X_OK) or not os.path.exists(a.ctl):
        return None
    r = subprocess.run([AGENTCTL, "-s", a.ctl, "status", "--json"], capture_output=True, text=True,
                       timeout=10 * harness.SCALE)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def wait_received(a, n, timeout=30.0):
    """Wait until agentd has read n records, when its status says so (else give it a moment)."""
    if status(a) is None:
        time.sleep(1.0)
        return
    wait_for(lambda: (status(a) or {}).get("received", 0) >= n, timeout, interval=0.2,
             what=f"agentd to read {n} records")


STOPPED = re.compile(r"stopped: received (\d+), delivered (\d+), spooled (\d+), dropped (\d+)")


def stopped_line(text):
    """(received, delivered, spooled, dropped) from the last "stopped:" line of agentd's log."""
    m = STOPPED.findall(text)
    assert m, "agentd's log has no 'stopped: received ..., dropped N' line"
    return tuple(int(x) for x in m[-1])


def proc_status(pid, key):
    """A /proc/PID/status field in bytes (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def spool_entries(path):
    """[(offset, blob_len, nrecords)] of the entries of one segment file."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    off = 0
    while off + ENT_HDR.size <= len(data):
        magic, blen, nrec, _res, _t, _crc, _pad = ENT_HDR.unpack_from(data, off)
        assert magic == ENT_MAGIC, f"{path}: no entry magic at offset {off}"
        out.append((off, blen, nrec))
        off += ENT_HDR.size + blen
    assert off == len(data), f"{path}: {len(data) - off} trailing bytes"
    return out


def blob_messages(blob):
    """The message of every record in a spool entry's blob (record.h layout)."""
    msgs, off = [], 0
    while off < len(blob):
        flen = struct.unpack_from("<I", blob, off)[0]
        frame = blob[off + REC_HDR: off + REC_HDR + flen]
        mlen = FRAME_HDR.unpack_from(frame)[-1]
        msgs.append(frame[FRAME_HDR.size: FRAME_HDR.size + mlen].decode())
        off += (REC_HDR + flen + 7) & ~7
    return msgs


# ---- 1. outage, SIGTERM, restart ----------------------------------------------------

def test_upstream_down_sigterm_and_restart_delivers_all_10000(agentd, upstream, pg):
    port = harness.free_port()
    a = agentd({"upstream": {"url": url_of(port)}, "agentd": {"shutdown_timeout_ms": 2000}, **FAST_RETRY})
    assert agent_flood(a.sock, 10000, prefix="down") == (10000, 0)
    wait_received(a, 10000)
    assert a.stop() == 0
    received, delivered, spooled, dropped = stopped_line(a.stderr())
    assert (received, delivered, dropped) == (10000, 0, 0), a.stderr()
    assert spooled >= 10000
    assert a.spool_bytes() > 0 and pg.count() == 0

    upstream(port)
    b = agentd({"upstream": {"url": url_of(port)}}, name="again")
    rows = arrive(pg, 10000, "message LIKE 'down %'", timeout=60)
    figure(f"outage + SIGTERM + restart: 10000 sent, {rows} rows, {rows - 10000} duplicates")
    assert b.stop() == 0
    assert stopped_line(b.stderr())[3] == 0


# ---- 2. a long outage under load: memory stays bounded ---------------------------------

OUTAGE_S = 20  # 60 in test_spool_soak.py (SOAK=1)
RATE = 5000
QUEUE_BYTES = 8 << 20
RSS_MARGIN = 24 << 20


def long_outage(agentd, upstream, pg, seconds):
    """Upstream down for `seconds` under RATE records/s; all arrive after; VmHWM < 8M + 24M."""
    port = harness.free_port()
    a = agentd({"upstream": {"url": url_of(port)}, "queue": {"max_bytes": "8M"}, **FAST_RETRY})
    n = RATE * seconds
    flood = subprocess.Popen([harness.AGENT_FLOOD, "-S", a.sock, "-n", str(n), "-r", str(RATE), "-p", "outage"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        rss_max = 0
        while flood.poll() is None:
            rss_max = max(rss_max, proc_status(a.proc.pid, "VmRSS"))
            time.sleep(0.5)
        out, err = flood.communicate()
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    assert out.split() == ["sent", str(n), "dropped", "0"], (out, err)
    assert pg.count() == 0
    hwm_down = proc_status(a.proc.pid, "VmHWM")

    t0 = time.monotonic()
    upstream(port)
    rows = arrive(pg, n, "message LIKE 'outage %'", timeout=60 + seconds * 3)
    took = time.monotonic() - t0
    hwm = proc_status(a.proc.pid, "VmHWM")
    figure(f"{seconds} s outage at {RATE}/s: {n} sent, {rows} rows, {rows - n} duplicates; "
           f"VmRSS max {rss_max >> 20} MiB while down, VmHWM {hwm_down >> 20} MiB while down, "
           f"{hwm >> 20} MiB after the catch-up ({took:.1f} s); bound 8 MiB + margin 24 MiB")
    assert a.alive()
    if not harness.WRAPPER and not os.environ.get("AGENTD_SANITIZED"):  # valgrind, ASan: their own footprint
        assert hwm < QUEUE_BYTES + RSS_MARGIN, f"VmHWM {hwm} bytes, over [queue] max_bytes 8M + 24M"
    assert a.stop() == 0
    assert stopped_line(a.stderr())[3] == 0


def test_long_outage_under_load_all_arrive_and_memory_stays_bounded(agentd, upstream, pg):
    """20 s of outage at 5,000 records/s in `make check` (60 s: test_spool_soak.py, SOAK=1):
    everything arrives once the upstream is back, and agentd's VmHWM stays under
    [queue] max_bytes (8M) plus a margin of 24 MiB."""
    long_outage(agentd, upstream, pg, OUTAGE_S)


# ---- 3. 503 beyond max_retries --------------------------------------------------------

def test_six_503_in_a_row_beyond_max_retries_loses_nothing(agentd, receiver, pg):
    receiver.fail(6, status=503)
    a = agentd({"upstream": {"max_inflight": 1}, "batch": {"max_records": 1000, "interval_ms": 3000},
                "retry": {"max_retries": 3, "initial_backoff_ms": 100, "max_backoff_ms": 500}})
    assert agent_flood(a.sock, 1000, prefix="r503") == (1000, 0)
    rows = arrive(pg, 1000, "message LIKE 'r503 %'", timeout=30)
    reqs = receiver.requests()
    statuses = [q["status"] for q in reqs]
    assert statuses[:6] == [503] * 6 and set(statuses[6:]) == {200}, statuses
    assert reqs[0]["records"] == 1000, "one batch took all six 503s"
    figure(f"six 503s: 1000 sent, {rows} rows, {rows - 1000} duplicates, {len(reqs)} requests")
    assert "retries exhausted" in a.stderr()


# ---- 4. poison record -> dead letter -------------------------------------------------

def test_one_refused_record_in_1000_goes_to_the_dead_letter_file(agentd, receiver, pg):
    receiver.refuse("^poison")
    a = agentd({"batch": {"max_records": 1000, "interval_ms": 10000},
                "retry": {"max_retries": 1, "initial_backoff_ms": 300, "max_backoff_ms": 600}})
    frames = [encode_frame(f"good {i}") for i in range(500)]
    frames.append(encode_frame("poison pill", fields={"why": "refused"}))
    frames += [encode_frame(f"good {i}") for i in range(500, 999)]
    send_frames(a.sock, frames)
    rows = arrive(pg, 999, "message LIKE 'good %'", timeout=60)
    assert pg.count("message LIKE 'poison%'") == 0
    assert receiver.requests()[0]["records"] == 1000, "the 1000 records went as one batch"
    figure(f"poison: 999 good, {rows} rows, {rows - 999} duplicates, {len(receiver.requests())} requests")

    # the lone record's last refusal may come after its good sibling's rows
    dead = wait_for(lambda: glob.glob(os.path.join(a.spool, "dead", "dead-*.jsonl")), 10,
                    what="a dead-letter file")
    assert len(dead) == 1, f"dead-letter files: {dead}"
    assert os.stat(dead[0]).st_mode & 0o777 == 0o600
    with open(dead[0]) as f:
        letters = [json.loads(line) for line in f]
    assert len(letters) == 1, letters
    d = letters[0]
    assert d["record"]["message"] == "poison pill", d
    assert "refused record" in d["reason"], f"the server's answer is kept with the record: {d['reason']!r}"
    st = status(a)
    if st is not None:
        assert st["dead_letters"] == 1 and st["spool"]["dead_letters"] == 1, st


def test_a_lone_refused_record_waits_for_its_slow_sibling_then_is_a_dead_letter(agentd, receiver, pg):
    """The record is refused at once, while its good sibling's answer takes
    1.5 s: the lone record's retries run out before anything has got through.
    It must wait for that answer in memory. In the spool its history is lost,
    and a replay that starts after the sibling's answer, with nothing else
    flowing, would never see another batch get through."""
    receiver.refuse("^poison")
    receiver.delay(1500, only_ok=True)
    a = agentd({"batch": {"max_records": 2, "interval_ms": 10000},
                "retry": {"max_retries": 1, "initial_backoff_ms": 50, "max_backoff_ms": 200}})
    send_frames(a.sock, [encode_frame("good sibling"), encode_frame("poison alone")])
    arrive(pg, 1, "message = 'good sibling'", timeout=20)
    dead = wait_for(lambda: glob.glob(os.path.join(a.spool, "dead", "dead-*.jsonl")), 10,
                    what="a dead-letter file")
    with open(dead[0]) as f:
        letters = [json.loads(line) for line in f]
    assert [d["record"]["message"] for d in letters] == ["poison alone"]
    st = status(a)
    if st is not None:
        assert st["dead_letters"] == 1 and st["spooled"] == 0 and st["replayed"] == 0, st
    assert pg.count() == 1


# ---- 5. torn segment --------------------------------------------------------------------

def test_a_segment_cut_mid_entry_keeps_every_whole_entry_and_counts_the_torn_one(agentd, upstream, pg):
    port = harness.free_port()
    a = agentd({"upstream": {"url": url_of(port)}, "batch": {"max_records": 100},
                "agentd": {"shutdown_timeout_ms": 1000}, **FAST_RETRY})
    assert agent_flood(a.sock, 3000, prefix="torn") == (3000, 0)
    wait_received(a, 3000)
    assert a.stop() == 0

    segs = sorted(glob.glob(os.path.join(a.spool, "*.seg")))
    assert segs, "the records are in the spool"
    entries = [(s, e) for s in segs for e in spool_entries(s)]
    assert sum(e[2] for _, e in entries) == 3000, "every record was spooled"
    seg, (off, blen, nrec) = entries[-1]
    with open(seg, "rb") as f:
        f.seek(off + ENT_HDR.size)
        torn = set(blob_messages(f.read(blen)))
    assert len(torn) == nrec
    os.truncate(seg, off + ENT_HDR.size + blen // 2)  # a crash in the middle of the last write

    upstream(port)
    b = agentd({"upstream": {"url": url_of(port)}}, name="after")
    rows = arrive(pg, 3000 - nrec, "message LIKE 'torn %'", timeout=60)
    got = {r["message"] for r in pg.rows("SELECT DISTINCT message FROM logs WHERE message LIKE 'torn %'")}
    assert got.isdisjoint(torn) and len(got | torn) == 3000, "exactly the torn entry's records are missing"
    log = b.stderr()
    assert re.search(r"torn", log), f"the torn entry is reported:\n{log}"
    m = re.search(r"cut (\d+) torn entr", log)
    if m:
        assert int(m.group(1)) == 1, log
    figure(f"torn segment: {len(entries)} entries, the last ({nrec} records) cut; {3000 - nrec} whole "
           f"records arrived, {rows} rows, {rows - (3000 - nrec)} duplicates")


# ---- 5b. a burst past the memory bound goes to the spool, not to the floor -----------------

def held_burst(a, frames):
    """Have agentd find all of frames waiting in its socket at once (one wakeup reads them all)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        # unix datagrams in flight count against the sender's buffer: make room for all
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 16 << 20)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 20)
        s.settimeout(10 * harness.SCALE)  # never wait forever on a stopped agentd
        s.connect(a.sock)
        a.signal(signal.SIGSTOP)
        try:
            for fr in frames:
                s.send(fr)
        finally:
            a.signal(signal.SIGCONT)


def test_a_burst_past_the_memory_bound_is_spooled_not_dropped(agentd, upstream, pg):
    """The upstream is down and one read brings several times [queue] max_bytes:
    with a writable spool nothing may be dropped (DESIGN: past the bound records
    go to the spool; only with the spool off or full are the oldest dropped)."""
    port = harness.free_port()
    a = agentd({"upstream": {"url": url_of(port)}, "ingest": {"max_record_bytes": "4K"},
                "batch": {"max_records": 200, "max_bytes": "64K"},
                "queue": {"max_records": 5000, "max_bytes": "256K"}, **FAST_RETRY})
    pad = "x" * 3000
    for r in range(3):  # 3 x 450 records of ~3 KB: 1.3 MB a read against 256 KiB of memory
        held_burst(a, [encode_frame(f"burst {r}-{i} {pad}") for i in range(450)])
        wait_received(a, 450 * (r + 1))
    st = status(a)
    dropped = st["dropped"]["total"] if st else None
    upstream(port)
    try:
        rows = arrive(pg, 1350, "message LIKE 'burst %'", timeout=20)
    finally:
        got = distinct(pg, "message LIKE 'burst %'")
        figure(f"3 bursts of 450 x 3 KB at a 256K memory bound, upstream down: dropped {dropped}, "
               f"{got} of 1350 arrived")
    assert a.stop() == 0
    assert stopped_line(a.stderr())[3] == 0
    figure(f"burst: {rows - 1350} duplicates")


# ---- 6. a full filesystem ------------------------------------------------------------------

def _mount_tmpfs(path, size):
    if not harness.is_root():
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                       capture_output=True, text=True)
    return r.returncode == 0


def _start_with_fsize(a, limit):
    """Like Agentd.start, with RLIMIT_FSIZE (soft) set to limit: writes past it fail with EFBIG."""
    os.makedirs(a.spool, exist_ok=True)

    def lower():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    with open(a.errfile, "ab") as err:
        a.proc = subprocess.Popen(harness.WRAPPER + [harness.AGENTD_BIN, "-c", a.config], stdin=subprocess.DEVNULL,
                                  stdout=err, stderr=err, start_new_session=True, preexec_fn=lower)
    harness.on_exit(a.kill)
    wait_for(lambda: os.path.exists(a.sock), 10, what="agentd's ingest socket")


def test_a_full_spool_filesystem_drops_counted_and_recovers(agentd, upstream, pg, workdir):
    port = harness.free_port()
    spool = os.path.join(workdir, "spool")
    os.makedirs(spool, exist_ok=True)
    mounted = _mount_tmpfs(spool, "1M")
    a = None
    try:
        a = agentd({"upstream": {"url": url_of(port)}, "ingest": {"max_record_bytes": "4K"},
                    "batch": {"max_records": 200, "max_bytes": "64K"},
                    "queue": {"max_records": 5000, "max_bytes": "1M"},
                    "spool": {"segment_bytes": "64K"}, **FAST_RETRY}, start=mounted)
        if not mounted:
            _start_with_fsize(a, 32 << 10)  # a segment cannot pass 32K: every append past it fails

        # Fill it: 20000 records (~6 MB) against 1 MiB of disk and 1 MiB of memory.
        assert agent_flood(a.sock, 20000, prefix="full") == (20000, 0)
        wait_received(a, 20000)
        wait_for(lambda: "cannot write to the spool" in a.stderr(), 10, what="agentd to report the full spool")
        assert a.alive(), "no crash on a full disk"
        st = status(a)
        if st is not None:
            assert st["dropped"]["total"] > 0, st["dropped"]
            assert st["spool"]["write_errors"] > 0, st["spool"]
        # Logged once per episode, not per failed batch. A small batch may
        # still fit on the nearly full disk and end an episode, so count
        # episodes: exactly one is open now.
        log = a.stderr()
        began, ended = log.count("cannot write to the spool"), log.count("spool writable again")
        assert began - ended == 1, (began, ended)
        if st is not None:
            assert began == 1 or began < st["spool"]["write_errors"], (began, st["spool"])

        # Space returns; the upstream is still down: new records go to the spool again.
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=64M", spool], check=True)
        else:
            resource.prlimit(a.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        assert agent_flood(a.sock, 2000, prefix="mid") == (2000, 0)
        wait_for(lambda: "spool writable again" in a.stderr(), 15, what="the spool to be written again")

        # The upstream returns: whatever was not dropped arrives.
        upstream(port)
        assert agent_flood(a.sock, 500, prefix="late") == (500, 0)
        late = arrive(pg, 500, "message LIKE 'late %'", timeout=60, settle=0)
        mid = arrive(pg, 2000, "message LIKE 'mid %'", timeout=60, settle=0)
        if status(a) is not None:
            def drained():
                st = status(a)
                return st["queued"]["records"] == 0 and st["spool"]["records"] == 0 and st
            try:
                wait_for(drained, 20, interval=0.5, what="memory and spool to drain with the upstream up")
            except AssertionError as e:
                raise AssertionError(f"{e}: {json.dumps(status(a))}") from None
        time.sleep(1)
        full = distinct(pg, "message LIKE 'full %'")
        rows_full = pg.count("message LIKE 'full %'")
        assert a.stop() == 0
        received, delivered, spooled, dropped = stopped_line(a.stderr())
        assert received == 22500
        assert dropped > 0, "the drops are counted"
        assert full + dropped == 20000, f"{full} delivered + {dropped} dropped != 20000 sent"
        figure(f"full disk ({'tmpfs 1M' if mounted else 'RLIMIT_FSIZE 32K'}): 20000 sent while full, {full} "
               f"arrived, {dropped} dropped and counted, {rows_full - full} duplicates; after recovery "
               f"2000 + 500 sent, {mid - 2000} + {late - 500} duplicates")
    finally:
        if mounted:
            if a is not None and a.alive():
                try:
                    a.stop()
                except AssertionError:
                    pass
            subprocess.run(["umount", "-l", spool], capture_output=True)


# ---- 7. mode = always, SIGKILL under socket activation ---------------------------------------

def _launch_activated(a, dgram):
    """Start agentd on the held socket as systemd does: fd 3, LISTEN_FDS=1, LISTEN_PID=its pid."""
    script = 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=ingest; export LISTEN_PID LISTEN_FDS LISTEN_FDNAMES; ' \
             'exec "$@" 3<&0 </dev/null'
    with open(a.errfile, "ab") as err:
        p = subprocess.Popen(["/bin/sh", "-c", script, "sh"] + harness.WRAPPER + [harness.AGENTD_BIN, "-c", a.config],
                             stdin=dgram.fileno(), stdout=err, stderr=err, start_new_session=True)
    harness.on_exit(lambda: p.poll() is None and (p.kill(), p.wait()))
    return p


EPOLL_WAITS = {"232", "281", "441"}  # x86_64 epoll_wait, epoll_pwait, epoll_pwait2


def _kill_when_idle(p):
    """SIGKILL agentd while its loop waits in epoll, never in the middle of a
    read: mode = always writes what each recvmmsg took before the next one,
    and a kill inside a read can lose only the datagrams it had already taken
    from the kernel. Returns how many tries it took."""
    for tries in range(1, 1001):
        os.kill(p.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: _proc_state(p.pid) == "T", 5, interval=0.001, what="agentd stopped")
            with open(f"/proc/{p.pid}/syscall") as f:
                idle = f.read().split()[0] in EPOLL_WAITS
            if idle:
                os.kill(p.pid, signal.SIGKILL)
                return tries
        finally:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError("agentd never seen waiting in epoll")


def _proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_mode_always_sigkill_under_socket_activation_loses_nothing(agentd, pg, workdir):
    import sys
    sys.path.insert(0, os.path.join(harness.REPO, "tests", "tools"))
    import sockholder

    a = agentd({"spool": {"mode": "always"}, "ingest": {"stream_socket": ""}}, start=False)
    os.makedirs(a.spool, exist_ok=True)
    dgram = sockholder.bind_dgram(a.sock)  # held here, across agentd's deaths
    n, rate, kills = 30000, 6000, 3
    flood = subprocess.Popen([harness.AGENT_FLOOD, "-S", a.sock, "-n", str(n), "-r", str(rate), "-p", "kill"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = None
    try:
        p = _launch_activated(a, dgram)
        seen = []
        for _ in range(kills):
            time.sleep(1.2)
            assert p.poll() is None, f"agentd exited {p.returncode}:\n{a.stderr()}"
            seen.append(pg.count("message LIKE 'kill %'"))
            _kill_when_idle(p)
            p.wait()
            p = _launch_activated(a, dgram)
        out, err = flood.communicate(timeout=60 * harness.SCALE)
        assert out.split() == ["sent", str(n), "dropped", "0"], (out, err)
        rows = arrive(pg, n, "message LIKE 'kill %'", timeout=60)
        figure(f"mode=always, {kills} SIGKILLs under socket activation: {n} sent, rows at the kills {seen}, "
               f"{rows} rows, {rows - n} duplicates")
        p.send_signal(signal.SIGTERM)
        assert p.wait(30 * harness.SCALE) == 0, a.stderr()
        if os.environ.get("SPOOL_DEBUG"):
            print(a.stderr())
    except BaseException:
        print(f"----- agentd stderr ({a.dir}) -----\n{a.stderr()}")
        raise
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        dgram.close()


def test_mode_always_records_read_in_one_burst_are_on_disk_before_sigkill(agentd, receiver, pg):
    """mode = always: a read that fills whole batches ([batch] max_records) must
    put them on disk too, not only the remainder left in the open batch, so that
    SIGKILL loses nothing that was read."""
    receiver.delay(2000)  # slow server: the batches wait in memory
    a = agentd({"spool": {"mode": "always"}, "upstream": {"max_inflight": 1}, "batch": {"max_records": 50}})
    held_burst(a, [encode_frame(f"burst {i}") for i in range(500)])  # 10 batches in one read
    wait_received(a, 500)
    time.sleep(0.5)
    a.kill()
    a.proc = None  # killed on purpose: not a crash for the fixture
    receiver.delay(0)
    agentd({"spool": {"mode": "always"}}, name="after")
    try:
        rows = arrive(pg, 500, "message LIKE 'burst %'", timeout=15)
    finally:
        got = distinct(pg, "message LIKE 'burst %'")
        figure(f"mode=always, 500 records in one read, then SIGKILL: {got} of 500 arrived")
    figure(f"mode=always burst then SIGKILL: {rows - 500} duplicates")
