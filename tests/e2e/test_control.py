"""The control socket and agentctl (proto/CONTROL.md) against a running agentd,
the reference receiver and PostgreSQL."""
import json
import os
import select
import socket
import subprocess
import time

import pytest

import harness
from harness import agent_flood, encode_frame, send_frames, wait_count, wait_for

AGENTCTL = os.path.join(harness.BUILD, "bin", "agentctl")
LV = {name: i for i, name in enumerate(harness.LEVELS)}


@pytest.fixture(autouse=True)
def need_agentctl():
    if not os.access(AGENTCTL, os.X_OK):
        pytest.skip(f"agentctl is not built yet ({AGENTCTL} missing)")


def ctl(a, *args, check=True, user=None, timeout=30):
    argv = [AGENTCTL, "-s", a.ctl, *args]
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout * harness.SCALE)
    if check:
        assert r.returncode == 0, f"agentctl {' '.join(args)}: {r.returncode} {r.stdout!r} {r.stderr!r}"
    return r


def status(a):
    return json.loads(ctl(a, "status", "--json").stdout)


def raw(a):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10 * harness.SCALE)
    s.connect(a.ctl)
    return s


def read_all(s):
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def frames(service, n, level=2, prefix="m"):
    return [encode_frame(f"{prefix} {i}", {"service": service, "seq": i}, level=level) for i in range(n)]


def test_status_and_metrics_match_what_was_sent_and_stored(agentd, pg):
    a = agentd()
    send_frames(a.sock, frames("ctl-status", 120))
    send_frames(a.sock, [b"AGgarbage"] * 3)  # malformed: counted, not delivered
    wait_count(pg, 120, where="service = 'ctl-status'")

    s = wait_for(lambda: (lambda s: s if s["delivered"] == 120 else None)(status(a)), 10, what="delivered 120")
    for key in ("version", "uptime_s", "config", "received", "delivered", "dropped", "malformed", "queued", "spooled",
                "replayed", "retries", "upstream", "spool", "rates", "mapped", "shim_dropped", "senders", "control"):
        assert key in s, key
    assert s["received"] == 120 == pg.count("service = 'ctl-status'")
    assert s["dropped"]["total"] == 0
    assert s["malformed"]["total"] == 3
    assert s["config"] == a.config
    assert s["queued"]["records"] == 0
    assert s["upstream"]["state"] == "up"
    assert s["upstream"]["url"].endswith("/logs")
    assert 200 <= s["upstream"]["last_status"] < 300
    assert s["upstream"]["inflight"] == 0
    assert s["spool"] is not None and s["spool"]["dead_letters"] == 0
    me = [x for x in s["senders"] if x["pid"] == os.getpid()]
    assert me and me[0]["records"] == 120 and me[0]["uid"] == os.getuid()
    assert s["control"]["refused"] == 0

    human = ctl(a, "status").stdout
    assert "received 120, delivered 120" in human
    assert "upstream" in human and s["upstream"]["url"] in human

    text = ctl(a, "metrics").stdout
    assert "# HELP agentd_received_records_total " in text
    assert "# TYPE agentd_received_records_total counter" in text
    assert "\nagentd_received_records_total 120\n" in text
    assert "\nagentd_delivered_records_total 120\n" in text
    assert 'agentd_dropped_records_total{reason="queue_full"} 0' in text
    assert "\nagentd_queue_records 0\n" in text
    assert "\nagentd_upstream_up 1\n" in text
    for line in text.splitlines():
        assert line.startswith("# HELP agentd_") or line.startswith("# TYPE agentd_") or line.startswith("agentd_")


def test_flush_answers_once_the_queued_records_are_delivered(agentd, pg):
    a = agentd({"batch": {"interval_ms": 60000, "max_records": 1000}})
    send_frames(a.sock, frames("ctl-flush", 7))
    wait_for(lambda: status(a)["queued"]["records"] == 7, 5, what="7 queued")
    assert pg.count("service = 'ctl-flush'") == 0
    r = ctl(a, "flush")
    assert "7 records delivered, 0 failed" in r.stdout
    assert pg.count("service = 'ctl-flush'") == 7
    assert status(a)["queued"]["records"] == 0


def test_reload_reports_its_outcome(agentd):
    a = agentd()
    r = ctl(a, "reload")
    assert "reloaded" in r.stdout
    with open(a.config, "a") as f:
        f.write("[batch]\nmax_records = lots\n")
    r = ctl(a, "reload", check=False)
    assert r.returncode == 1
    assert "reload failed" in r.stderr and "max_records" in r.stderr
    a.write_config()  # good again, for a clean stop
    assert ctl(a, "status").returncode == 0


class Tail:
    def __init__(self, a, *args):
        self.p = subprocess.Popen([AGENTCTL, "-s", a.ctl, "tail", "--json", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.buf = b""

    def lines(self, want, timeout=10):
        out = []
        deadline = time.monotonic() + timeout * harness.SCALE
        while len(out) < want and time.monotonic() < deadline:
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                out.append(json.loads(line))
                continue
            r, _, _ = select.select([self.p.stdout], [], [], 0.1)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.buf += chunk
        return out

    def stop(self):
        self.p.terminate()
        self.p.wait(10)
        self.p.stdout.close()
        self.p.stderr.close()


def test_tail_shows_new_records_and_honours_its_filters(agentd, pg):
    a = agentd()
    send_frames(a.sock, [encode_frame("before tail", {"service": "svc-a"}, level=LV["ERROR"])])
    t = Tail(a, "--level", "warning", "--service", "svc-a")
    u = Tail(a)
    try:
        wait_for(lambda: status(a)["control"]["tail_clients"] == 2, 10, what="two tail clients")
        send_frames(a.sock, [
            encode_frame("info a", {"service": "svc-a"}, level=LV["INFO"]),
            encode_frame("error a", {"service": "svc-a", "n": 5}, level=LV["ERROR"]),
            encode_frame("error b", {"service": "svc-b"}, level=LV["ERROR"]),
            encode_frame("info as warn a", {"service": "svc-a", "level": "warn"}, level=LV["INFO"]),
            encode_frame("fatal a", {"service": "svc-a"}, level=LV["FATAL"]),
        ])
        got = t.lines(3)
        assert [r["message"] for r in got] == ["error a", "info as warn a", "fatal a"]
        assert [r["level"] for r in got] == ["ERROR", "WARN", "FATAL"]
        assert got[0]["fields"]["n"] == 5 and got[0]["service"] == "svc-a"
        assert got[0]["pid"] == os.getpid() and got[0]["uid"] == os.getuid()
        everything = u.lines(5)
        assert [r["message"] for r in everything] == ["info a", "error a", "error b", "info as warn a", "fatal a"]
        assert t.lines(1, timeout=0.5) == []  # nothing else matched
    finally:
        t.stop()
        u.stop()
    wait_count(pg, 6)
    wait_for(lambda: status(a)["control"]["tail_clients"] == 0, 10, what="tail clients gone")


def test_tail_human_output(agentd):
    a = agentd()
    p = subprocess.Popen([AGENTCTL, "-s", a.ctl, "tail"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: status(a)["control"]["tail_clients"] == 1, 10, what="a tail client")
        send_frames(a.sock, [encode_frame("plain line", {"service": "svc-h", "k": "v"}, level=LV["WARN"])])
        ready, _, _ = select.select([p.stdout], [], [], 10 * harness.SCALE)
        assert ready, "agentctl tail printed nothing in 10 s"
        line = p.stdout.readline()
        assert "WARN" in line and "svc-h" in line and "plain line" in line and "k=v" in line
        assert "\033[" not in line  # not a terminal: no colour
    finally:
        p.terminate()
        p.wait(10)
        p.stdout.close()
        p.stderr.close()


@pytest.mark.skipif(not harness.is_root(), reason="needs root to run agentctl as another user")
def test_another_user_is_refused_and_counted(agentd, workdir):
    a = agentd({"control": {"socket_mode": "0666"}})
    for d in (workdir, a.dir):
        os.chmod(d, os.stat(d).st_mode | 0o001)
    # agentd answers a refused peer at accept and closes, which may be before
    # agentctl has sent its request: the answer must still be shown, each time
    for _ in range(5):
        r = ctl(a, "status", check=False, user="nobody")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "permission denied" in r.stderr
    assert status(a)["control"]["refused"] == 5
    # and with the default mode 0660 the kernel already keeps it out: unreachable
    b = agentd({"spool": {"dir": os.path.join(workdir, "spool2")}}, name="b2")
    os.chmod(b.dir, os.stat(b.dir).st_mode | 0o001)
    r = ctl(b, "status", check=False, user="nobody")
    assert r.returncode == 2 and "cannot connect" in r.stderr


def test_unreachable_agentd_exits_2_with_a_message(workdir):
    path = os.path.join(workdir, "nothing.sock")
    r = subprocess.run([AGENTCTL, "-s", path, "status"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert f"cannot connect to {path}" in r.stderr and "is agentd running?" in r.stderr
    r = subprocess.run([AGENTCTL, "status"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, AGENTCTL_SOCKET=path))
    assert r.returncode == 2 and path in r.stderr


def test_bad_requests_get_an_error_and_agentd_keeps_serving(agentd, pg):
    a = agentd({"control": {"max_clients": 3}})
    # random bytes
    s = raw(a)
    s.sendall(os.urandom(3000) + b"\n")
    reply = read_all(s)
    s.close()
    assert json.loads(reply.split(b"\n")[0])["ok"] is False
    # an unterminated request, then the end of input
    s = raw(a)
    s.sendall(b'{"cmd":"status"')
    s.shutdown(socket.SHUT_WR)
    reply = json.loads(read_all(s).split(b"\n")[0])
    s.close()
    assert reply["ok"] is False and "incomplete" in reply["error"]
    # a 1 MB request: refused at 4 KiB, connection closed
    s = raw(a)
    try:
        s.sendall(b'{"cmd":"status","pad":"' + b"x" * 1000000 + b'"}\n')
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = read_all(s)
    s.close()
    assert b"too long" in reply
    # a valid JSON line that is no request
    s = raw(a)
    s.sendall(b'{"cmd":"launch"}\n')
    assert json.loads(read_all(s))["error"] == "unknown command"
    s.close()
    # several requests on one connection, answered in order
    s = raw(a)
    s.sendall(b'{"cmd":"status"}\n\n{"cmd":"metrics"}\n')
    f = s.makefile("rb")
    assert "received" in json.loads(f.readline())
    assert "agentd_received_records_total" in json.loads(f.readline())["metrics"]
    f.close()
    s.close()
    # past max_clients
    held = [raw(a) for _ in range(3)]
    extra = raw(a)
    reply = json.loads(read_all(extra).split(b"\n")[0])
    assert "too many clients" in reply["error"]
    extra.close()
    for h in held:
        h.close()
    # still serving, and still delivering
    def held_gone():
        # until agentd has seen them close, a status request may itself be
        # one client too many
        r = ctl(a, "status", "--json", check=False)
        return r.returncode == 0 and json.loads(r.stdout)["control"]["clients"] == 1
    wait_for(held_gone, 10, what="held clients gone")
    send_frames(a.sock, frames("ctl-after", 10))
    wait_count(pg, 10, where="service = 'ctl-after'")
    assert a.alive()


def test_a_tail_client_that_never_reads_does_not_slow_delivery(agentd, pg):
    a = agentd()
    s = raw(a)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b'{"cmd":"tail"}\n')  # and never read
    wait_for(lambda: status(a)["control"]["tail_clients"] == 1, 10, what="the tail client")
    t0 = time.monotonic()
    sent, dropped = agent_flood(a.sock, 20000, prefix="slowtail")
    assert (sent, dropped) == (20000, 0)
    wait_count(pg, 20000, timeout=60, where="message LIKE 'slowtail %'")
    took = time.monotonic() - t0
    st = status(a)
    assert st["received"] == 20000 and st["dropped"]["total"] == 0
    assert st["control"]["tail_missed"] > 0, "the tail client should have missed records"
    assert took < 60 * harness.SCALE
    # it drains: the notice of what it missed comes before newer records
    s.setblocking(False)
    data = b""
    deadline = time.monotonic() + 10 * harness.SCALE
    while b'"missed"' not in data and time.monotonic() < deadline:
        try:
            data += s.recv(1 << 20)
        except BlockingIOError:
            send_frames(a.sock, frames("slowtail-late", 1))
            time.sleep(0.05)
    s.close()
    assert b'{"missed":' in data
