#!/usr/bin/env bash
# bench/http.sh - the HTTP API against nginx serving a static file, measured in the same run
# on this machine (report only; never gates CI).
#
#   bench/http.sh                   RUNS=3 DURATION=10
#   RUNS=1 DURATION=5 bench/http.sh a quick pass (~2 min)
#
# Environment (defaults in brackets):
#   LK_BIN      lockstep to measure [build-release/lockstep, else build/lockstep]
#   RUNS        repetitions of each figure; medians are reported [3]
#   DURATION    seconds per wrk run [10]
#   THREADS     wrk threads [2]   CONNS  wrk connections at full speed [32]
#   RATE        requests/s of the fixed-rate figure [2000]
#   ROWS        rows of the streamed table [100000]; BURST changes per catch-up [20000]
#
# One throw-away cluster from tests/harness/pg-test-env.sh. Figures:
#  1. full speed: wrk (keep-alive, THREADS x CONNS) against lockstep's GET /api/health and
#     GET /api/sync/status/{id} (a finished run), and against nginx (worker_processes auto,
#     access log off, keep-alive) serving a static JSON file of the same size as lockstep's
#     /api/health answer. Ratio: lockstep requests/s / nginx requests/s (target >= 0.5).
#  2. a fixed RATE of GET /api/sync/status/{id} while a real-time job streams: each of
#     RATE/87 connections sends a request 10 ms after its last answer (wrk's delay(); wrk 4
#     has no constant-rate mode, so the achieved rate is reported); p99 latency from wrk's
#     histogram (target < 5 ms). The stream's throughput: BURST source rows are updated in
#     one statement and the time until the target holds all of them (sum(v) equal) gives
#     changes/s; bursts alternate without load, with the same paced load sent to nginx (what
#     wrk and the kernel's loopback cost on these 2 cores) and with it sent to lockstep,
#     RUNS times each (target: reduced by under 10% against no load).
# Report: stdout and bench/results/REPORT-http.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if [[ -z "${LK_BIN:-}" ]]; then
	LK_BIN=$root/build-release/lockstep
	[[ -x "$LK_BIN" ]] || LK_BIN=$root/build/lockstep
fi
LK=$LK_BIN
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
RATE=${RATE:-2000}
ROWS=${ROWS:-100000}
BURST=${BURST:-20000}
[[ -x "$LK" ]] || { echo "bench: no lockstep at $LK (make, or cmake --preset release)" >&2; exit 2; }
if ! command -v wrk >/dev/null || ! [[ -x /usr/sbin/nginx ]]; then
	SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
	echo "bench: installing wrk and nginx-light" >&2
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		wrk nginx-light >/dev/null
fi

W=$(mktemp -d /tmp/lk-bench-http.XXXXXX)
chmod 755 "$W"
LKPID=
NGXPID=
cleanup() {
	[[ -n "$LKPID" ]] && kill "$LKPID" 2>/dev/null && wait "$LKPID" 2>/dev/null || true
	[[ -n "$NGXPID" ]] && kill "$NGXPID" 2>/dev/null || true
	"$root/tests/harness/pg-test-env.sh" stop "$W/pg" >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT
"$root/tests/harness/pg-test-env.sh" start "$W/pg" >/dev/null
PGP=$(sed -n 's/^PGPORT=//p' "$W/pg/env")
BIN=$(sed -n 's/^PGBINDIR=//p' "$W/pg/env")
psql_() { "$BIN/psql" -h 127.0.0.1 -p "$PGP" -U postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }
psql_ -c "CREATE DATABASE src" -c "CREATE DATABASE dst"
src() { psql_ -d src "$@"; }
dst() { psql_ -d dst "$@"; }
src -c "CREATE TABLE items (id bigint PRIMARY KEY, v bigint NOT NULL, payload text)" \
	-c "INSERT INTO items SELECT i, 0, md5(i::text) FROM generate_series(1, $ROWS) i"
dst -c "CREATE TABLE items (id bigint PRIMARY KEY, v bigint NOT NULL, payload text)"
src -c "CREATE TABLE small (id int PRIMARY KEY, v int)" -c "INSERT INTO small VALUES (1, 1)"
dst -c "CREATE TABLE small (id int PRIMARY KEY, v int)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LKPORT=$(free_port)
cat >"$W/lockstep.yaml" <<YAML
state: sqlite:state.db
http: {listen: "127.0.0.1:$LKPORT"}
log: {level: warn}
databases:
  src: postgresql://postgres@127.0.0.1:$PGP/src
  dst: postgresql://postgres@127.0.0.1:$PGP/dst
jobs:
  rt:
    source: {db: src, table: items}
    target: {db: dst, table: items, create: false}
    mode: realtime
    batch: 5000
  small:
    source: {db: src, table: small}
    target: {db: dst, table: small, create: false}
    mode: snapshot
YAML
"$LK" -c "$W/lockstep.yaml" run >"$W/run.out" 2>"$W/run.err" &
LKPID=$!
base=http://127.0.0.1:$LKPORT
for _ in $(seq 300); do curl -sf "$base/livez" >/dev/null 2>&1 && break; sleep 0.1; done
sum_of() { "$@" -c "SELECT coalesce(sum(v), 0) || ' ' || count(*) FROM items"; }
# Waits until the target's sum(v) and count reach the source's; prints the seconds from $1.
wait_equal() {
	local want t0=$1
	want=$(sum_of src)
	for _ in $(seq 12000); do
		[[ $(sum_of dst) == "$want" ]] && break
		sleep 0.05
	done
	echo "$(date +%s.%N) - $t0" | bc -l
}
wait_equal "$(date +%s.%N)" >/dev/null
id=$(curl -sf -X POST -d '{"job": "small"}' "$base/api/sync" | python3 -c 'import json,sys; print(json.load(sys.stdin)["syncId"])')
for _ in $(seq 100); do
	curl -sf "$base/api/sync/status/$id" | grep -q '"status": *"succeeded"' && break
	sleep 0.1
done

# nginx on a free port, serving a file as large as lockstep's /api/health answer.
NGXPORT=$(free_port)
mkdir -p "$W/nginx/www" "$W/nginx/tmp"
curl -sf "$base/api/health" >"$W/nginx/www/health.json"
cat >"$W/nginx/nginx.conf" <<NGX
worker_processes auto;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $W/nginx/tmp; proxy_temp_path $W/nginx/tmp;
  fastcgi_temp_path $W/nginx/tmp; uwsgi_temp_path $W/nginx/tmp; scgi_temp_path $W/nginx/tmp;
  types { application/json json; }
  server { listen 127.0.0.1:$NGXPORT; root $W/nginx/www; keepalive_requests 1000000; }
}
NGX
/usr/sbin/nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" &
NGXPID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$NGXPORT/health.json" >/dev/null 2>&1 && break; sleep 0.1; done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
spread() { sort -g | awk -v f="${1:-%.0f}" 'NR==1{lo=$1} {hi=$1} END {printf f "-" f, lo, hi}'; }
# Requests/s of one full-speed wrk run.
rps() { wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$1" | awk '/^Requests\/sec/ {print $2}'; }
declare -A R
for _ in $(seq "$RUNS"); do
	R[nginx]+="$(rps "http://127.0.0.1:$NGXPORT/health.json") "
	R[health]+="$(rps "$base/api/health") "
	R[status]+="$(rps "$base/api/sync/status/$id") "
done

# Fixed rate: RATE/87 connections, each waiting 10 ms before its next request (a request
# and wrk's timer take about 1.5 ms more).
cat >"$W/paced.lua" <<'LUA'
function delay() return 10 end
LUA
nconn=$(((RATE * 115 + 9999) / 10000))
paced() { # URL
	wrk -t"$THREADS" -c"$nconn" -d"${DURATION}s" --latency -s "$W/paced.lua" "$1" >"$W/paced.out"
	awk '/^Requests\/sec/ {print "rate", $2} / 99%/ {print "p99", $2} / 50%/ {print "p50", $2}' "$W/paced.out"
}
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; printf "%.3f\n", v}'; }
burst() { # prints changes/s of one burst, applied while the stream runs
	local t0
	t0=$(date +%s.%N)
	src -c "UPDATE items SET v = v + 1 WHERE id <= $BURST"
	echo "$BURST / $(wait_equal "$t0")" | bc -l
}
for _ in $(seq "$RUNS"); do
	R[burst_idle]+="$(burst) "
	paced "http://127.0.0.1:$NGXPORT/health.json" >/dev/null &
	pp=$!
	sleep 1
	R[burst_ngx]+="$(burst) "
	wait "$pp"
	paced "$base/api/sync/status/$id" >"$W/paced.fig" &
	pp=$!
	sleep 1
	R[burst_http]+="$(burst) "
	wait "$pp"
	R[p99]+="$(awk '$1=="p99" {print $2}' "$W/paced.fig" | to_ms) "
	R[p50]+="$(awk '$1=="p50" {print $2}' "$W/paced.fig" | to_ms) "
	R[rate]+="$(awk '$1=="rate" {print $2}' "$W/paced.fig") "
done

med() { tr ' ' '\n' <<<"${R[$1]}" | grep . | median; }
spr() { tr ' ' '\n' <<<"${R[$1]}" | grep . | spread "${2:-%.0f}"; }
ratio() { printf "%.2f" "$(echo "$1 / $2" | bc -l)"; }
verdict() { if [[ $(echo "$1" | bc -l) == 1 ]]; then echo met; else echo "not met"; fi; }
ng=$(med nginx); he=$(med health); stt=$(med status)
bi=$(med burst_idle); bh=$(med burst_http); bn=$(med burst_ngx); p99=$(med p99)
drop=$(echo "(1 - $bh / $bi) * 100" | bc -l)
dropn=$(echo "(1 - $bn / $bi) * 100" | bc -l)
mkdir -p "$here/results"
report=$here/results/REPORT-http.md
{
	echo "# HTTP API benchmark ($(date -u +%Y-%m-%d), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo ?))"
	echo
	echo "$(nproc) cores, $("$BIN/postgres" --version), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///'); $LK"
	echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, medians of $RUNS runs (spread in brackets)."
	echo
	echo "| figure | lockstep | baseline | ratio | target |"
	echo "|---|---:|---:|---:|---|"
	echo "| GET /api/health, requests/s vs nginx static file | $(printf %.0f "$he") [$(spr health)] | $(printf %.0f "$ng") [$(spr nginx)] | $(ratio "$he" "$ng") | >= 0.5: $(verdict "$he / $ng >= 0.5") |"
	echo "| GET /api/sync/status/{id}, requests/s vs nginx | $(printf %.0f "$stt") [$(spr status)] | $(printf %.0f "$ng") | $(ratio "$stt" "$ng") | >= 0.5: $(verdict "$stt / $ng >= 0.5") |"
	echo "| status at a fixed rate during a stream: p99 latency | $p99 ms [$(spr p99 %.2f)] (p50 $(med p50) ms, at $(printf %.0f "$(med rate)") req/s) | – | – | < 5 ms: $(verdict "$p99 < 5") |"
	echo "| stream throughput, changes/s, with vs without that load | $(printf %.0f "$bh") [$(spr burst_http)] | $(printf %.0f "$bi") [$(spr burst_idle)] | $(ratio "$bh" "$bi") | drop < 10%: $(verdict "$drop < 10") ($(printf %.1f "$drop")%) |"
	echo "| (the same load sent to nginx instead: the machine's share of that drop) | $(printf %.0f "$bn") [$(spr burst_ngx)] | $(printf %.0f "$bi") | $(ratio "$bn" "$bi") | – ($(printf %.1f "$dropn")%) |"
} | tee "$report"
# one TSV line per target for bench/all.sh (BENCH_SUMMARY)
if [[ -n "${BENCH_SUMMARY:-}" ]]; then
	{
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "GET /api/health at full speed (requests/s)" "$(printf %.0f "$he")" \
			"$(printf %.0f "$ng") (nginx, static file)" "$(ratio "$he" "$ng")" "≥ 0.5" "$(verdict "$he / $ng >= 0.5")"
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "GET /api/sync/status/{id} at full speed (requests/s)" "$(printf %.0f "$stt")" \
			"$(printf %.0f "$ng") (nginx, static file)" "$(ratio "$stt" "$ng")" "≥ 0.5" "$(verdict "$stt / $ng >= 0.5")"
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "status p99 at $(printf %.0f "$(med rate)") req/s during a stream (ms)" "$p99" "-" "-" \
			"< 5 ms" "$(verdict "$p99 < 5")"
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "stream throughput under that load (changes/s)" "$(printf %.0f "$bh")" \
			"$(printf %.0f "$bi") (no load; $(printf %.0f "$bn") with the load sent to nginx)" "$(ratio "$bh" "$bi")" \
			"drop < 10%" "$(verdict "$drop < 10") ($(printf %.1f "$drop")%)"
	} >>"$BENCH_SUMMARY"
fi
kill -0 "$LKPID" 2>/dev/null || { echo "bench: lockstep run died" >&2; tail -20 "$W/run.err" >&2; exit 1; }
