#!/bin/sh
# make run: the whole stack on this machine, everything under ./run/:
# a PostgreSQL cluster (unix socket only), the reference receiver on
# 127.0.0.1:$RECEIVER_PORT (8000), and agentd in the foreground with
# ./run/agentd.conf (conf/agentd.conf with ./run paths). Ctrl-C stops agentd
# (it flushes), then the receiver and PostgreSQL.
#
# Environment: BUILD (build), RECEIVER_PORT (8000), PGPORT (5432: only names
# the socket file, no TCP).
set -eu

cd "$(dirname "$0")/../.."
REPO=$(pwd)
BUILD=${BUILD:-build}
RUN=$REPO/run
PGBIN=/usr/lib/postgresql/15/bin
PGDATA=$RUN/pg/data
PGSOCK=$RUN/pg
PGPORT=${PGPORT:-5432}
PORT=${RECEIVER_PORT:-8000}
AGENTD=$REPO/$BUILD/bin/agentd
AGENT_LOG=$REPO/$BUILD/bin/agent-log
CONF=$RUN/agentd.conf
QLEN=/proc/sys/net/unix/max_dgram_qlen

if [ ! -x "$AGENTD" ]; then
	echo "run-stack: $AGENTD is not built (make all)" >&2
	exit 1
fi

if [ "$(id -u)" = 0 ]; then
	PGUSER=postgres
	as_pg() { runuser -u postgres -- "$@"; }
else
	PGUSER=$(id -un)
	as_pg() { "$@"; }
fi

AGENTD_PID=
RECEIVER_PID=
OLD_QLEN=

stop_agentd() {
	[ -n "$AGENTD_PID" ] && kill -TERM "$AGENTD_PID" 2>/dev/null || true
}

cleanup() {
	trap - INT TERM EXIT
	if [ -n "$AGENTD_PID" ] && kill -0 "$AGENTD_PID" 2>/dev/null; then
		kill -TERM "$AGENTD_PID" 2>/dev/null || true
		wait "$AGENTD_PID" 2>/dev/null || true
	fi
	if [ -n "$RECEIVER_PID" ]; then
		echo "run-stack: stopping the receiver"
		kill -TERM "$RECEIVER_PID" 2>/dev/null || true
		wait "$RECEIVER_PID" 2>/dev/null || true
	fi
	if [ -f "$PGDATA/postmaster.pid" ]; then
		echo "run-stack: stopping PostgreSQL"
		as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ -n "$OLD_QLEN" ]; then
		echo "$OLD_QLEN" >"$QLEN" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'stop_agentd' INT TERM

mkdir -p "$RUN" "$RUN/spool" "$PGSOCK"

# Datagram sockets queue max_dgram_qlen datagrams (default 10): raise it.
if [ "$(id -u)" = 0 ] && [ -w "$QLEN" ] && [ "$(cat "$QLEN")" -lt 512 ]; then
	OLD_QLEN=$(cat "$QLEN")
	echo 512 >"$QLEN"
	echo "run-stack: net.unix.max_dgram_qlen $OLD_QLEN -> 512 (restored at exit)"
fi

# ---- PostgreSQL ----------------------------------------------------------
[ "$(id -u)" = 0 ] && chown postgres:postgres "$RUN/pg"
if [ ! -f "$PGDATA/PG_VERSION" ]; then
	echo "run-stack: initdb $PGDATA"
	as_pg "$PGBIN/initdb" -D "$PGDATA" -U "$PGUSER" -A trust -E UTF8 --locale=C >"$RUN/initdb.log"
	cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$PGSOCK'
port = $PGPORT
EOF
fi
if [ -f "$PGDATA/postmaster.pid" ]; then
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
fi
# Own session: Ctrl-C reaches agentd first; the trap stops the rest after it.
as_pg setsid "$PGBIN/pg_ctl" -D "$PGDATA" -l "$RUN/pg/pg.log" -w start >/dev/null
echo "run-stack: PostgreSQL on $PGSOCK/.s.PGSQL.$PGPORT"

# ---- the receiver ----------------------------------------------------------
: >"$RUN/receiver.log"
setsid /usr/bin/python3 "$REPO/tests/receiver/receiver.py" --host 127.0.0.1 --port "$PORT" \
	--pg-host "$PGSOCK" --pg-port "$PGPORT" --pg-user "$PGUSER" --pg-db postgres \
	>>"$RUN/receiver.log" 2>&1 &
RECEIVER_PID=$!
i=0
until grep -q '^receiver ready' "$RUN/receiver.log"; do
	i=$((i + 1))
	if [ $i -gt 150 ] || ! kill -0 "$RECEIVER_PID" 2>/dev/null; then
		echo "run-stack: the receiver did not start:" >&2
		cat "$RUN/receiver.log" >&2
		exit 1
	fi
	sleep 0.1
done
cat "$RUN/receiver.log"

# ---- agentd's configuration --------------------------------------------------
# Set these keys (section.key=value) in a copy of conf/agentd.conf, or write
# them alone when it is not there.
SETTINGS="agentd.log_level=info
ingest.socket=$RUN/agentd.sock
ingest.stream_socket=$RUN/agentd.stream
upstream.url=http://127.0.0.1:$PORT/logs
spool.dir=$RUN/spool
control.socket=$RUN/control.sock"
SRC=conf/agentd.conf
[ -f "$SRC" ] || SRC=/dev/null
echo "$SETTINGS" | awk -v src="$SRC" '
	BEGIN { FS = "=" }
	NR == FNR { split($1, sk, "."); v = substr($0, length($1) + 2)
		val[$1] = v; order[++n] = $1; next }
	/^\[[a-z]+\]/ { sec = substr($0, 2, index($0, "]") - 2) }
	{ line = $0; k = line; sub(/^[#;][ \t]*/, "", k); sub(/[ \t]*=.*/, "", k)
	  if (line ~ /^[#;]?[ \t]*[a-z_]+[ \t]*=/ && ((sec "." k) in val) && !((sec "." k) in done)) {
		print k " = " val[sec "." k]; done[sec "." k] = 1; next }
	  print line }
	END { for (i = 1; i <= n; i++) if (!(order[i] in done)) {
		split(order[i], sk, "."); print "\n[" sk[1] "]\n" sk[2] " = " val[order[i]] } }
' - "$SRC" >"$CONF"
echo "run-stack: wrote $CONF"

cat <<EOF

Send a record:
  $AGENT_LOG -S $RUN/agentd.sock -p info -t demo -f user_id=u-1 "hello"
See it in PostgreSQL (about a second later):
  psql -h $PGSOCK -p $PGPORT -U $PGUSER postgres -c 'select id, created_at, level, service, user_id, message, metadata from logs order by id desc limit 5'
Watch agentd:
  $REPO/$BUILD/bin/agentctl -s $RUN/control.sock status      (or: tail, metrics, flush)

Starting agentd (Ctrl-C stops everything).
EOF

"$AGENTD" -c "$CONF" &
AGENTD_PID=$!
rc=0
while kill -0 "$AGENTD_PID" 2>/dev/null; do
	wait "$AGENTD_PID" && rc=0 || rc=$?
done
AGENTD_PID=
echo "run-stack: agentd exited ($rc)"
exit "$rc"
