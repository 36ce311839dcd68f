#!/usr/bin/python3
"""sockholder: hold agentd's sockets the way systemd does, and run agentd on them.

    sockholder.py --dgram /run/x/agentd.sock [--stream /run/x/agentd.stream]
                  [--notify PATH --notify-log FILE] [--watchdog-usec N]
                  [--restart-every SECONDS --restarts N] [--pidfile FILE]
                  -- agentd -c agentd.conf

It binds the datagram socket (SO_PASSCRED, a large SO_RCVBUF, --dgram-mode)
and optionally a listening stream socket, like agentd.socket and
agentd-stream.socket, and starts the command with them at fds 3 and 4 and
LISTEN_FDS, LISTEN_FDNAMES=ingest[:stream] and LISTEN_PID (the child's own
pid, set in the child just before exec). The sockets stay open here while
the command restarts, so datagrams sent meanwhile wait in the kernel.

Signals to the holder: SIGUSR1 restarts the command (SIGTERM, wait up to
--stop-timeout, SIGKILL, start again); SIGHUP is passed on; SIGTERM/SIGINT
are passed on as SIGTERM and the holder exits with the command's status.
When the command exits by itself, so does the holder, with its status.

With --notify it is also the service manager's NOTIFY_SOCKET: every
datagram received goes to --notify-log as one JSON line
{"t": monotonic seconds, "pid": sender, "text": "READY=1"}.
NotifyListener is importable for tests that want a NOTIFY_SOCKET in-process.

Standard library only; Linux only.
"""
import argparse
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import time

FD_START = 3
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def log(msg):
    print("sockholder: " + msg, file=sys.stderr, flush=True)


def _sockaddr(path):
    """'@name' is an abstract address, anything else a file path."""
    return "\0" + path[1:] if path.startswith("@") else path


def _prepare_path(path):
    if path.startswith("@"):
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _set_rcvbuf(sock, size):
    if not size:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def bind_dgram(path, mode=0o666, rcvbuf=8 << 20):
    """The ingest socket as agentd.socket makes it."""
    _prepare_path(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    _set_rcvbuf(s, rcvbuf)
    s.bind(_sockaddr(path))
    if not path.startswith("@"):
        os.chmod(path, mode)
    return s


def bind_stream(path, mode=0o666, rcvbuf=8 << 20, backlog=256):
    """The stream socket as agentd-stream.socket makes it."""
    _prepare_path(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _set_rcvbuf(s, rcvbuf)
    s.bind(_sockaddr(path))
    if not path.startswith("@"):
        os.chmod(path, mode)
    s.listen(backlog)
    return s


class NotifyListener:
    """A NOTIFY_SOCKET: collects what a service sends, with the sender's pid.

    messages: list of dicts {"t", "pid", "text", "fields"} in arrival order,
    where fields maps each KEY of the datagram's KEY=VALUE lines to VALUE.
    """

    def __init__(self, path):
        self.path = path
        _prepare_path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(_sockaddr(path))
        self.sock.setblocking(False)
        self.messages = []

    def fileno(self):
        return self.sock.fileno()

    def drain(self):
        """Read what is waiting; return the new messages."""
        new = []
        cmsg_space = socket.CMSG_SPACE(struct.calcsize("3i"))
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(65536, cmsg_space)
            except (BlockingIOError, InterruptedError):
                break
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", cdata[: struct.calcsize("3i")])[0]
            text = data.decode("utf-8", "replace")
            fields = {}
            for line in text.split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            new.append({"t": time.monotonic(), "pid": pid, "text": text, "fields": fields})
        self.messages.extend(new)
        return new

    def wait_for(self, key, value=None, timeout=10.0, start=0):
        """First message from index start on with KEY (=value, if given), or None."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            self.drain()
            while i < len(self.messages):
                m = self.messages[i]
                if key in m["fields"] and (value is None or m["fields"][key] == value):
                    return m
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([self.sock], [], [], left)

    def close(self):
        self.sock.close()
        if not self.path.startswith("@"):
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def start_child(argv, socks, names, extra_env):
    pid = os.fork()
    if pid:
        return pid
    try:
        # Move out of the way first, so placing at 3, 4 clobbers nothing.
        high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 100) for s in socks]
        for i, fd in enumerate(high):
            os.dup2(fd, FD_START + i, inheritable=True)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT,
                    signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        env = dict(os.environ)
        env.update(extra_env)
        env["LISTEN_FDS"] = str(len(socks))
        env["LISTEN_FDNAMES"] = ":".join(names)
        env["LISTEN_PID"] = str(os.getpid())
        if "WATCHDOG_USEC" in extra_env:
            env["WATCHDOG_PID"] = str(os.getpid())
        os.execvpe(argv[0], argv, env)
    except BaseException as e:  # noqa: B036 - nothing may return into the holder's loop
        try:
            log("exec %s failed: %s" % (argv[0], e))
        finally:
            os._exit(127)


def exit_status(status):
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


class Holder:
    def __init__(self, args):
        self.args = args
        self.socks, self.names = [], []
        self.socks.append(bind_dgram(args.dgram, args.dgram_mode, args.rcvbuf))
        self.names.append("ingest")
        if args.stream:
            self.socks.append(bind_stream(args.stream, args.stream_mode, args.rcvbuf))
            self.names.append("stream")
        self.env = {}
        self.notify = None
        self.notify_log = None
        if args.notify:
            self.notify = NotifyListener(args.notify)
            self.env["NOTIFY_SOCKET"] = args.notify
            if args.notify_log:
                self.notify_log = open(args.notify_log, "a", buffering=1)
        if args.watchdog_usec:
            self.env["WATCHDOG_USEC"] = str(args.watchdog_usec)
        self.child = None
        self.starts = 0

    def pump_notify(self):
        if not self.notify:
            return
        for m in self.notify.drain():
            if self.notify_log:
                self.notify_log.write(json.dumps({"t": m["t"], "pid": m["pid"], "text": m["text"]}) + "\n")

    def start(self):
        self.child = start_child(self.args.command, self.socks, self.names, self.env)
        self.starts += 1
        if self.args.pidfile:
            tmp = self.args.pidfile + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % self.child)
            os.replace(tmp, self.args.pidfile)
        log("started pid %d (start %d)" % (self.child, self.starts))

    def stop(self, sig=signal.SIGTERM):
        """Signal the child and wait for it; SIGKILL after --stop-timeout."""
        os.kill(self.child, sig)
        deadline = time.monotonic() + self.args.stop_timeout
        while True:
            pid, status = os.waitpid(self.child, os.WNOHANG)
            if pid:
                log("pid %d stopped, status %d" % (pid, exit_status(status)))
                self.child = None
                return exit_status(status)
            if time.monotonic() > deadline:
                log("pid %d still running after %.1f s: SIGKILL" % (self.child, self.args.stop_timeout))
                os.kill(self.child, signal.SIGKILL)
                deadline = float("inf")
            self.pump_notify()
            time.sleep(0.01)

    def cleanup(self):
        for s, path in zip(self.socks, [self.args.dgram, self.args.stream]):
            s.close()
            if path and not path.startswith("@"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        if self.notify:
            self.notify.close()

    def run(self):
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, lambda *_: None)

        self.start()
        every, left = self.args.restart_every, self.args.restarts
        next_restart = time.monotonic() + every if every and left else None
        try:
            while True:
                timeout = None if next_restart is None else max(0.0, next_restart - time.monotonic())
                rl = [wake_r] + ([self.notify] if self.notify else [])
                select.select(rl, [], [], timeout)
                self.pump_notify()
                sigs = b""
                try:
                    sigs = wake_r.recv(256)
                except BlockingIOError:
                    pass
                restart = False
                for s in sigs:
                    if s in (signal.SIGTERM, signal.SIGINT):
                        log("stopping")
                        return self.stop()
                    if s == signal.SIGHUP:
                        os.kill(self.child, signal.SIGHUP)
                    elif s == signal.SIGUSR1:
                        restart = True
                pid, status = os.waitpid(self.child, os.WNOHANG)
                if pid:
                    log("pid %d exited by itself, status %d" % (pid, exit_status(status)))
                    self.pump_notify()
                    return exit_status(status)
                if next_restart is not None and time.monotonic() >= next_restart:
                    restart = True
                    left -= 1
                    next_restart = time.monotonic() + every if left > 0 else None
                if restart:
                    self.stop()
                    self.start()
        finally:
            self.pump_notify()
            self.cleanup()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dgram", required=True, help="datagram socket path (or @abstract), passed as 'ingest'")
    p.add_argument("--dgram-mode", type=lambda s: int(s, 8), default=0o666)
    p.add_argument("--stream", help="stream socket path, passed as 'stream'")
    p.add_argument("--stream-mode", type=lambda s: int(s, 8), default=0o666)
    p.add_argument("--rcvbuf", type=int, default=8 << 20, help="receive buffer bytes (0: kernel default)")
    p.add_argument("--notify", help="be the NOTIFY_SOCKET at this path (or @abstract)")
    p.add_argument("--notify-log", help="append each notify datagram here as a JSON line")
    p.add_argument("--watchdog-usec", type=int, default=0, help="set WATCHDOG_USEC (and WATCHDOG_PID)")
    p.add_argument("--restart-every", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--restarts", type=int, default=0, help="how many timed restarts")
    p.add_argument("--stop-timeout", type=float, default=30.0, help="seconds before SIGKILL")
    p.add_argument("--pidfile", help="the command's current pid, rewritten at each start")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if a.command and a.command[0] == "--":
        a.command = a.command[1:]
    if not a.command:
        p.error("no command given")
    return a


def main(argv=None):
    holder = Holder(parse_args(sys.argv[1:] if argv is None else argv))
    return holder.run()


if __name__ == "__main__":
    sys.exit(main())
