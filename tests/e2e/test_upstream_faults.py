"""A misbehaving upstream (tests/tools/faulty_upstream.py in front of the
receiver): connection refused, a reset in the middle of a response, a response
that never comes, redirects, a 200 with a garbage body, TLS with a self-signed
certificate, a bearer token. After each fault delivery resumes by itself and
nothing is lost; duplicates (at-least-once) are counted and reported."""
import os
import secrets
import signal
import subprocess
import sys

import pytest

import harness
from harness import encode_frame, send_frames, wait_for

sys.path.insert(0, os.path.join(harness.REPO, "tests", "tools"))
from faulty_upstream import FaultyUpstream  # noqa: E402

FAST = {
    "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 500, "max_retries": 2},
    "batch": {"max_records": 50, "interval_ms": 200},
}


@pytest.fixture
def upstream(receiver):
    """Factory of FaultyUpstream servers in front of the receiver, stopped at teardown."""
    made = []

    def factory(**kw):
        u = FaultyUpstream(receiver.base, **kw)
        made.append(u)
        return u
    yield factory
    for u in made:
        u.stop()


def send(a, tag, n):
    send_frames(a.sock, [encode_frame(f"{tag}-{i}", [("i", i)]) for i in range(n)])


def delivered(pg, tag):
    """(rows, distinct records) stored for tag."""
    r = pg.rows("SELECT count(*) AS total, count(DISTINCT message) AS distinct_ FROM logs WHERE message LIKE $1",
                tag + "-%")[0]
    return r["total"], r["distinct_"]


def expect_all(pg, tag, n, timeout=30, record_property=None):
    """Every one of the n records arrives; returns the number of duplicates."""
    last = [None]

    def done():
        last[0] = delivered(pg, tag)
        return last[0][1] == n
    try:
        wait_for(done, timeout, interval=0.1, what=f"{n} distinct records tagged {tag}")
    except AssertionError as e:
        raise AssertionError(f"{e}: (rows, distinct) = {last[0]}") from None
    total, distinct = delivered(pg, tag)
    assert distinct == n
    dups = total - distinct
    print(f"{tag}: {n} records delivered, {dups} duplicates")
    if record_property:
        record_property("duplicates", dups)
    return dups


def no_server_errors(receiver):
    """Every request the receiver got was answered 200 (none refused, none 500)."""
    wait_for(lambda: all(q["status"] is not None for q in receiver.requests()), 10,
             what="the receiver to answer every request")
    bad = [q for q in receiver.requests() if q["status"] != 200]
    assert not bad, f"the receiver refused requests: {bad[:3]}"


def test_connection_refused_then_the_server_comes_up(upstream, agentd, pg, receiver, record_property):
    up = upstream(port=harness.free_port())  # nothing listens there yet
    a = agentd({"upstream": {"url": up.url, "connect_timeout_ms": 500}, **FAST})
    send(a, "refused", 300)
    wait_for(lambda: "upload failed" in a.stderr(), 10, what="agentd to report the failed uploads")
    assert pg.count() == 0
    up.start()
    expect_all(pg, "refused", 300, record_property=record_property)
    no_server_errors(receiver)
    assert a.alive()


def test_reset_in_the_middle_of_a_response(upstream, agentd, pg, receiver, record_property):
    up = upstream().start()
    up.fault("reset", count=2)
    up.fault("reset-early", count=1)
    a = agentd({"upstream": {"url": up.url}, **FAST})
    send(a, "reset", 300)
    dups = expect_all(pg, "reset", 300, record_property=record_property)
    assert len(up.requests("reset")) == 2 and len(up.requests("reset-early")) == 1
    # the two reset answers came after the records were stored: resent, so duplicated
    assert dups <= 2 * 50, f"{dups} duplicates from two reset batches of at most 50"
    no_server_errors(receiver)
    assert a.alive()


def test_a_response_that_never_comes_times_out(upstream, agentd, pg, receiver, record_property):
    up = upstream().start()
    up.fault("hang", count=2)
    a = agentd({"upstream": {"url": up.url, "timeout_ms": 500, "connect_timeout_ms": 200}, **FAST})
    send(a, "hang", 120)
    expect_all(pg, "hang", 120, timeout=20, record_property=record_property)
    assert len(up.requests("hang")) == 2
    assert "timeout" in a.stderr().lower() or "timed out" in a.stderr().lower(), "the timeout is logged"
    no_server_errors(receiver)
    assert a.alive()


@pytest.mark.parametrize("status", [301, 302])
def test_a_redirect_is_not_followed(upstream, agentd, pg, receiver, status, record_property):
    other = upstream().start()  # "another host": it must never be asked
    up = upstream().start()
    up.fault("redirect", count=3, status=status, location=other.url)
    a = agentd({"upstream": {"url": up.url}, **FAST})
    send(a, f"redirect{status}", 80)
    expect_all(pg, f"redirect{status}", 80, record_property=record_property)
    assert len(up.requests("redirect")) == 3
    assert other.accepted == 0 and other.requests() == [], "agentd followed the redirect"
    no_server_errors(receiver)


@pytest.mark.parametrize("stored", [False, True], ids=["not-stored", "stored"])
def test_a_200_with_a_garbage_body_is_not_taken_as_delivered(upstream, agentd, pg, receiver, stored,
                                                             record_property):
    up = upstream().start()
    up.fault("garbage", count=2, forward=stored)
    up.fault("garbage", count=1, forward=stored, body=b'{"status":"ok","count":"many"}')
    a = agentd({"upstream": {"url": up.url}, **FAST})
    tag = "garbage-stored" if stored else "garbage"
    send(a, tag, 100)
    dups = expect_all(pg, tag, 100, record_property=record_property)
    # stored garbage answers put rows in before the last retry is made
    wait_for(lambda: len(up.requests("garbage")) >= 3, 10, what="the third garbage answer")
    assert len(up.requests("garbage")) == 3
    if not stored:
        assert dups == 0
    no_server_errors(receiver)


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_https_self_signed_refused_while_verifying_then_accepted_with_ca_file(upstream, agentd, pg, receiver,
                                                                               workdir, record_property):
    cert, key = make_cert(workdir)
    up = upstream(tls=(cert, key)).start()
    assert up.url.startswith("https://")
    a = agentd({"upstream": {"url": up.url, "tls_verify": True}, **FAST})
    send(a, "tls", 150)
    wait_for(lambda: up.tls_failures >= 2, 10, what="agentd's TLS handshakes to fail")
    wait_for(lambda: "certificate" in a.stderr().lower() or "ssl" in a.stderr().lower(), 10,
             what="the certificate error in agentd's log")
    assert up.requests() == [] and pg.count() == 0, "an unverified server got records"
    a.write_config({"upstream": {"ca_file": cert}})
    a.signal(signal.SIGHUP)
    expect_all(pg, "tls", 150, record_property=record_property)
    assert all(q["status"] == 200 for q in up.requests())
    no_server_errors(receiver)


def test_bearer_token_is_sent_and_never_logged(upstream, agentd, pg, receiver, workdir):
    token = "tok-" + secrets.token_urlsafe(24)
    tf = os.path.join(workdir, "token")
    with open(tf, "w") as f:
        f.write(token + "\n")
    os.chmod(tf, 0o600)
    up = upstream().start()
    up.fault("status", count=1, status=401)
    up.fault("reset-early", count=1)
    a = agentd({"agentd": {"log_level": "debug"}, "upstream": {"url": up.url, "token_file": tf}, **FAST})
    send(a, "token", 60)
    expect_all(pg, "token", 60)
    reqs = up.requests()
    assert reqs and all(q["headers"].get("authorization") == f"Bearer {token}" for q in reqs), \
        [q["headers"].get("authorization") for q in reqs]
    a.stop()
    assert token not in a.stderr(), "the token is in agentd's log"
    secret = token.encode()
    for root, _, files in os.walk(workdir):
        for fn in files:
            p = os.path.join(root, fn)
            if p == tf or not os.path.isfile(p) or os.path.islink(p):
                continue
            with open(p, "rb") as fh:
                assert secret not in fh.read(), f"the token is in {p}"
