#!/usr/bin/env bash
# pg-test-env.sh - a throw-away PostgreSQL cluster for the integration tests.
#
#   pg-test-env.sh start DIR              initdb into DIR/data, start on a free port
#   pg-test-env.sh stop DIR               fast stop, then remove DIR
#   pg-test-env.sh restart-immediate DIR  crash-stop (-m immediate) and start again, same port
#
# DIR/env is written for the tests (sourceable shell and read by lktest.py):
# PGHOST, PGPORT, PGUSER, PGSOCKDIR, PGBINDIR. The server log is DIR/pg.log and is
# printed whenever a start fails. A missing PostgreSQL exits 77 (CTest's skip),
# except under CI or LK_REQUIRE_PG (require_pg_strict), where it exits 1.
#
# PostgreSQL refuses to run as root, so as root every server command runs as the
# `postgres` system user, which then owns DIR.
set -euo pipefail

die() {
	echo "pg-test-env: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 start|stop|restart-immediate DIR" >&2
	exit 2
}

# True when variable $1 is set to anything but "", 0, false, no or off.
env_on() {
	local v=${!1:-}
	v=${v,,}
	[[ -n "$v" && "$v" != 0 && "$v" != false && "$v" != no && "$v" != off ]]
}

# The rule of lktest.strict(): under CI (CI=true, CI=1, CI=yes, ...) or LK_REQUIRE_PG=1
# a missing PostgreSQL fails rather than skips.
require_pg_strict() {
	env_on CI || env_on LK_REQUIRE_PG
}

# Sets BINDIR to the newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl,
# else the folder of initdb on PATH; returns 1 when there is none.
find_bindir() {
	local d best="" bestv=-1 v
	for d in /usr/lib/postgresql/*/bin; do
		[[ -x "$d/initdb" && -x "$d/pg_ctl" ]] || continue
		v=$(basename "$(dirname "$d")")
		v=${v%%.*}
		[[ "$v" =~ ^[0-9]+$ ]] || v=0
		if ((v > bestv)); then
			bestv=$v
			best=$d
		fi
	done
	if [[ -z "$best" ]] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
		best=$(dirname "$(readlink -f "$(command -v initdb)")")
	fi
	[[ -n "$best" ]] || return 1
	BINDIR=$best
}

# Runs a command as the cluster owner: `postgres` when we are root, else ourselves.
as_owner() {
	if [[ $(id -u) -eq 0 ]]; then
		if command -v runuser >/dev/null 2>&1; then
			runuser -u postgres -- "$@"
		else
			local q
			q=$(printf '%q ' "$@")
			su postgres -s /bin/sh -c "$q"
		fi
	else
		"$@"
	fi
}

# Prints a TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
	local p
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' && return 0
	fi
	for ((p = 20000 + RANDOM % 20000; p < 65000; p++)); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

print_log() {
	if [[ -f "$DIR/pg.log" ]]; then
		echo "---- $DIR/pg.log ----" >&2
		tail -n 200 "$DIR/pg.log" >&2 || true
		echo "---- end of log ----" >&2
	fi
}

is_running() {
	[[ -f "$DIR/data/postmaster.pid" ]] && as_owner "$BINDIR/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

pg_start_server() {
	if ! as_owner "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/pg.log" -w -t 60 start >"$DIR/pg_ctl.out" 2>&1; then
		cat "$DIR/pg_ctl.out" >&2 || true
		print_log
		die "PostgreSQL did not start (data directory $DIR/data)"
	fi
}

write_env() {
	cat >"$DIR/env.tmp" <<EOF
PGHOST=127.0.0.1
PGPORT=$PORT
PGUSER=postgres
PGSOCKDIR=$DIR/sock
PGBINDIR=$BINDIR
EOF
	mv "$DIR/env.tmp" "$DIR/env"
}

cmd_stop() {
	if [[ -d "$DIR/data" ]] && find_bindir; then
		if is_running; then
			as_owner "$BINDIR/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
				as_owner "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
		fi
	fi
	rm -rf "$DIR"
}

cmd_start() {
	if ! find_bindir; then
		if require_pg_strict; then
			die "initdb/pg_ctl not found (CI or LK_REQUIRE_PG is set: PostgreSQL is required)"
		fi
		echo "pg-test-env: initdb/pg_ctl not found: skipping" >&2
		exit 77
	fi
	# A cluster left over from an interrupted run: stop it and start afresh.
	if [[ -e "$DIR" ]]; then
		cmd_stop
	fi
	mkdir -p "$DIR/sock"
	DIR=$(cd "$DIR" && pwd)
	if [[ $(id -u) -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' system user"
		chown -R postgres: "$DIR"
		# The owner must be able to reach DIR through every parent folder.
		local p=$DIR
		while [[ "$p" != "/" ]]; do
			p=$(dirname "$p")
			if ! runuser -u postgres -- test -x "$p" 2>/dev/null; then
				chmod o+x "$p" || true
			fi
		done
	fi
	if ! as_owner "$BINDIR/initdb" -A trust --nosync -U postgres -E UTF8 --locale=C.UTF-8 \
		-D "$DIR/data" >"$DIR/initdb.log" 2>&1; then
		# Older servers may not know C.UTF-8 as a locale name: retry with plain C.
		rm -rf "$DIR/data"
		if ! as_owner "$BINDIR/initdb" -A trust --nosync -U postgres -E UTF8 --locale=C \
			-D "$DIR/data" >"$DIR/initdb.log" 2>&1; then
			cat "$DIR/initdb.log" >&2
			die "initdb failed"
		fi
	fi
	PORT=$(free_port) || die "no free TCP port"
	cat >>"$DIR/data/postgresql.conf" <<EOF

# ---- pg-test-env.sh: a disposable test cluster; durability off for speed ----
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR/sock'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = logical
max_wal_senders = 20
max_replication_slots = 20
max_wal_size = 1GB
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
EOF
	pg_start_server
	write_env
	echo "pg-test-env: PostgreSQL ($BINDIR) on 127.0.0.1:$PORT, data in $DIR/data"
}

cmd_restart_immediate() {
	find_bindir || die "initdb/pg_ctl not found"
	[[ -f "$DIR/env" ]] || die "no cluster in $DIR (no $DIR/env)"
	PORT=$(sed -n 's/^PGPORT=//p' "$DIR/env")
	as_owner "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
	pg_start_server
	write_env
}

[[ $# -eq 2 ]] || usage
VERB=$1
DIR=$2
case "$VERB" in
start) cmd_start ;;
stop) cmd_stop ;;
restart-immediate) cmd_restart_immediate ;;
*) usage ;;
esac
