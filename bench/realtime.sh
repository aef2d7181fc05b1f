#!/usr/bin/env bash
# bench/realtime.sh - real-time mode against PostgreSQL's native logical replication, both
# measured in the same run on this machine (report only; never gates CI).
#
#   bench/realtime.sh            full: DURATION=60 RSS_MINUTES=10 PGB_SECONDS=30 (~35 min)
#   DURATION=20 RSS_MINUTES=2 PGB_SECONDS=10 bench/realtime.sh      a quick pass (~10 min)
#
# Environment (defaults in brackets):
#   LK_BIN        lockstep to measure [build-release/lockstep, else build/lockstep]
#   ROWS          rows in the streamed table [100000]
#   DURATION      seconds of load for the latency figure [60]
#   RAMP_DURATION seconds of load per step of the rate ramp [$DURATION]
#   RAMP_RATES    updates/s of the ramp's steps [1000 2000 4000 6000 8000]
#   DRAIN_OK      a step is sustained when the backlog drains within this many seconds [5]
#   CLIENTS       pgbench clients of the update load [8]
#   SYNC_COMMIT   synchronous_commit of the load's source sessions [on] (fsync is off in
#                 these clusters, so `on` costs a WAL write, not a disk flush; with `off` the
#                 walsender waits for the WAL writer, up to 200 ms: that is no apply cost)
#   PGB_SCALE     pgbench -i scale for the trigger-overhead figure [1, as plain pgbench -i]
#   PGB_SECONDS   pgbench -T per measurement [30]
#   PGB_CLIENTS   pgbench -c [4]
#   PGB_RUNS      alternations without / with change capture [2]
#   RSS_MINUTES   length of the RSS stream at 1,000 changes/s [10]
#   SKIP          space-separated figures to skip: latency ramp pgbench rss
#
# Two throw-away clusters (source and target) from tests/harness/pg-test-env.sh, like
# bench/run.sh: fsync off, wal_level logical. Figures:
#  1. latency from source commit to target visibility at 1,000 single-row updates/s. The
#     source row carries clock_timestamp() of its UPDATE in updated_at; a deferred
#     constraint trigger on the target (ENABLE ALWAYS, so it fires in the apply worker too)
#     records clock_timestamp() - updated_at as the target transaction commits. Both
#     clusters share the machine's clock. Same table shape, same load, same trigger for both.
#  2. the highest rate sustained for RAMP_DURATION: rates step up; a step is sustained when
#     the source reached 90% of the rate and the backlog (sum(v) on the source minus on the
#     target; every update adds 1 to v) drains within DRAIN_OK seconds after the load stops.
#  3. the source write overhead of lockstep's triggers: pgbench TPS (TPC-B-like, and a
#     single-row UPDATE of pgbench_accounts by random aid) without and with change capture on
#     pgbench_accounts (installed by one `lockstep sync` of a realtime job, removed by
#     `lockstep uninstall`; no applier runs while pgbench measures).
#  4. lockstep's RSS over RSS_MINUTES of streaming at 1,000 changes/s, sampled every second
#     from /proc/PID/status (VmRSS): second-minute and last-minute averages and their ratio.
# Raw figures: bench/results/realtime-*.csv and -rss.csv; the report: stdout and
# bench/results/REPORT-realtime.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if [[ -z "${LK_BIN:-}" ]]; then
	LK_BIN=$root/build-release/lockstep
	[[ -x "$LK_BIN" ]] || LK_BIN=$root/build/lockstep
fi
LK=$LK_BIN
ROWS=${ROWS:-100000}
DURATION=${DURATION:-60}
RAMP_DURATION=${RAMP_DURATION:-$DURATION}
RAMP_RATES=${RAMP_RATES:-"1000 2000 4000 6000 8000"}
DRAIN_OK=${DRAIN_OK:-5}
DRAIN_MAX=${DRAIN_MAX:-120}
CLIENTS=${CLIENTS:-8}
SYNC_COMMIT=${SYNC_COMMIT:-on}
PGB_SCALE=${PGB_SCALE:-1}
PGB_SECONDS=${PGB_SECONDS:-30}
PGB_CLIENTS=${PGB_CLIENTS:-4}
PGB_RUNS=${PGB_RUNS:-2}
RSS_MINUTES=${RSS_MINUTES:-10}
SKIP=${SKIP:-}
[[ -x "$LK" ]] || { echo "bench: no lockstep at $LK (cmake --preset release && cmake --build build-release)" >&2; exit 2; }
skip() { [[ " $SKIP " == *" $1 "* ]]; }

RES=$here/results
mkdir -p "$RES"
W=$(mktemp -d /tmp/lk-rtbench.XXXXXX)
chmod 755 "$W"
LKPID='' LAGPID=''
cleanup() {
	if [[ -n "$LAGPID" ]]; then kill "$LAGPID" 2>/dev/null || true; fi
	if [[ -n "$LKPID" ]]; then kill "$LKPID" 2>/dev/null || true; wait "$LKPID" 2>/dev/null || true; fi
	"$root/tests/harness/pg-test-env.sh" stop "$W/src" >/dev/null 2>&1 || true
	"$root/tests/harness/pg-test-env.sh" stop "$W/dst" >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

"$root/tests/harness/pg-test-env.sh" start "$W/src" >/dev/null
"$root/tests/harness/pg-test-env.sh" start "$W/dst" >/dev/null
port() { sed -n 's/^PGPORT=//p' "$1/env"; }
bindir() { sed -n 's/^PGBINDIR=//p' "$1/env"; }
SP=$(port "$W/src"); DP=$(port "$W/dst"); BIN=$(bindir "$W/src")
PSQL=$BIN/psql
PGBENCH=$BIN/pgbench
[[ -x "$PGBENCH" ]] || PGBENCH=$(command -v pgbench)
src() { "$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -d bench -qAtX -v ON_ERROR_STOP=1 "$@"; }
dst() { "$PSQL" -h 127.0.0.1 -p "$DP" -U postgres -d bench -qAtX -v ON_ERROR_STOP=1 "$@"; }
for p in "$SP" "$DP"; do
	"$PSQL" -h 127.0.0.1 -p "$p" -U postgres -qAtX -c "CREATE DATABASE bench" -c "CREATE DATABASE pgb"
done
SRC_URL=postgresql://postgres@127.0.0.1:$SP
DST_URL=postgresql://postgres@127.0.0.1:$DP

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
fmt() { awk -v x="$1" 'BEGIN {printf "%.2f", x}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0) print "-"; else printf "%.2f", a / b}'; }

# ---------------------------------------------------------------------------
# the streamed tables: lr_items (native logical replication), lk_items (lockstep)

table_sql() {
	echo "CREATE TABLE $1 (id bigint PRIMARY KEY, v bigint NOT NULL DEFAULT 0, status text,
	  updated_at timestamptz NOT NULL, payload text);"
}
for tb in lr_items lk_items; do
	src -c "$(table_sql $tb)" -c "INSERT INTO $tb SELECT i, 0, (ARRAY['active','inactive'])[1 + i % 2],
	  timestamptz '2024-01-01' + i * interval '1 second', md5(i::text) || md5((i * 7)::text)
	  FROM generate_series(1, $ROWS) i" -c "VACUUM ANALYZE $tb"
	dst -c "$(table_sql $tb)"
	cat >"$W/upd-$tb.pgbench" <<EOF
\\set n random(1, $ROWS)
UPDATE $tb SET updated_at = clock_timestamp(), v = v + 1 WHERE id = :n;
EOF
done
# The latency probe: at the target commit (deferred), now - the source's update time.
dst -c "CREATE UNLOGGED TABLE lat (ms double precision, at timestamptz DEFAULT clock_timestamp())" \
	-c "CREATE FUNCTION rt_lat() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN
	    INSERT INTO public.lat (ms) VALUES (extract(epoch FROM clock_timestamp() - NEW.updated_at) * 1000);
	    RETURN NULL; END\$\$"
for tb in lr_items lk_items; do
	dst -c "CREATE CONSTRAINT TRIGGER ${tb}_lat AFTER INSERT OR UPDATE ON $tb DEFERRABLE INITIALLY DEFERRED
	        FOR EACH ROW EXECUTE FUNCTION rt_lat()" -c "ALTER TABLE $tb ENABLE ALWAYS TRIGGER ${tb}_lat"
done

# LOAD TABLE RATE SECONDS OUT: pgbench of single-row updates at RATE/s (0: unthrottled).
load() {
	local r=()
	[[ "$2" != 0 ]] && r=(-R "$2")
	PGOPTIONS="-c synchronous_commit=$SYNC_COMMIT" "$PGBENCH" -h 127.0.0.1 -p "$SP" -U postgres -n \
		-f "$W/upd-$1.pgbench" -c "$CLIENTS" -j 2 "${r[@]}" -T "$3" bench >"$4" 2>&1
}
pgb_tps() { awk '/^tps = /{printf "%.0f", $3; exit}' "$1"; }

# Seconds until the target's sum(v) reaches the source's (capped at DRAIN_MAX), from T0.
drain() {
	local tb=$1 t0=$2 want
	want=$(src -c "SELECT sum(v) FROM $tb")
	while (($(dst -c "SELECT coalesce(sum(v), 0) FROM $tb") < want)); do
		if (($(awk -v a="$t0" -v b="$(now)" -v m="$DRAIN_MAX" 'BEGIN {print (b - a > m)}'))); then
			echo "timeout"
			return
		fi
		sleep 0.05
	done
	secs "$t0" "$(now)"
}

# Backlog sampler: every second, updates made on the source and not yet on the target.
lag_start() {
	(while kill -0 $$ 2>/dev/null; do
		b=$(dst -c "SELECT coalesce(sum(v), 0) FROM $1" 2>/dev/null) || b=0
		a=$(src -c "SELECT sum(v) FROM $1" 2>/dev/null) || a=$b
		echo $((a - b))
		sleep 1
	done) >"$W/lag" &
	LAGPID=$!
}
lag_stop() {
	kill "$LAGPID" 2>/dev/null || true
	wait "$LAGPID" 2>/dev/null || true
	sort -n "$W/lag" | tail -1
}

LAT_CSV=$RES/realtime-latency.csv
RAMP_CSV=$RES/realtime-ramp.csv
PGB_CSV=$RES/realtime-pgbench.csv
RSS_CSV=$RES/realtime-rss.csv
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
[[ -f "$LAT_CSV" ]] || echo "when,method,rate,seconds,source_tps,applied,p50_ms,p95_ms,p99_ms,max_ms,drain_s,max_backlog,cpu_pct" >"$LAT_CSV"
[[ -f "$RAMP_CSV" ]] || echo "when,method,rate,seconds,source_tps,drain_s,max_backlog,p99_ms,cpu_pct,sustained" >"$RAMP_CSV"
[[ -f "$PGB_CSV" ]] || echo "when,workload,capture,run,scale,clients,seconds,tps" >"$PGB_CSV"

# The processes doing the replication work: the walsender and the apply worker, or
# lockstep and its sessions on both clusters (application_name lockstep).
repl_pids() {
	if [[ $1 == native ]]; then
		src -c "SELECT pid FROM pg_stat_replication WHERE application_name = 'sub_lr'"
		dst -c "SELECT pid FROM pg_stat_subscription WHERE subname = 'sub_lr' AND pid IS NOT NULL"
	else
		echo "$LKPID"
		src -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'lockstep' AND datname = 'bench'"
		dst -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'lockstep' AND datname = 'bench'"
	fi
}
# CPU ticks (user + system) of the processes, all threads included.
ticks() {
	local sum=0 p
	for p in "$@"; do
		[[ -r /proc/$p/stat ]] && sum=$((sum + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo "$sum"
}
CLK_TCK=$(getconf CLK_TCK)

# MEASURE METHOD TABLE RATE SECONDS: one load at RATE; sets tps, drain_s, backlog, stats,
# cpu (% of one core used by the replication processes from the load's start to the drain).
measure() {
	local m=$1 tb=$2 rate=$3 d=$4 t0 t1 c0 c1 pids
	dst -c "TRUNCATE lat"
	src -c "CHECKPOINT" >/dev/null
	dst -c "CHECKPOINT" >/dev/null
	mapfile -t pids < <(repl_pids "$m")
	lag_start "$tb"
	c0=$(ticks "${pids[@]}")
	t0=$(now)
	load "$tb" "$rate" "$d" "$W/pgbench.$m.$rate"
	t1=$(now)
	drain_s=$(drain "$tb" "$t1")
	c1=$(ticks "${pids[@]}")
	cpu=$(awk -v c="$((c1 - c0))" -v k="$CLK_TCK" -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.0f", 100 * c / k / (b - a)}')
	backlog=$(lag_stop)
	tps=$(pgb_tps "$W/pgbench.$m.$rate")
	stats=$(dst -F, -c "SELECT count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
	  round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 2),
	  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2), round(max(ms)::numeric, 2) FROM lat")
	log "$m rate=$rate ${d}s: source tps=$tps applied,p50,p95,p99,max(ms)=$stats drain=${drain_s}s max backlog=$backlog cpu=${cpu}% (${#pids[@]} processes)"
}

# Latency at 1000/s, then the ramp, for one method; fills LAT_<m>, RAMP_<m>.
declare -A LAT RAMP_MAX RAMP_NOTE
bench_method() {
	local m=$1 tb=$2 rate ok
	if ! skip latency; then
		measure "$m" "$tb" 1000 "$DURATION"
		LAT[$m]="$tps,$stats,$drain_s,$backlog,$cpu"
		echo "$stamp,$m,1000,$DURATION,$tps,$stats,$drain_s,$backlog,$cpu" >>"$LAT_CSV"
	fi
	if ! skip ramp; then
		RAMP_MAX[$m]=0
		RAMP_NOTE[$m]=""
		for rate in $RAMP_RATES; do
			# The latency run is the ramp's 1,000/s step when it lasted as long.
			if [[ $rate != 1000 || $RAMP_DURATION != "$DURATION" ]] || skip latency; then
				measure "$m" "$tb" "$rate" "$RAMP_DURATION"
			fi
			ok=yes
			if [[ "$drain_s" == timeout ]] || (($(awk -v d="$drain_s" -v k="$DRAIN_OK" 'BEGIN {print (d > k)}'))); then
				ok="no: drain ${drain_s}s"
			elif (($(awk -v t="$tps" -v r="$rate" 'BEGIN {print (t < 0.9 * r)}'))); then
				ok="source-limited: $tps/s"
			fi
			echo "$stamp,$m,$rate,$RAMP_DURATION,$tps,$drain_s,$backlog,$(echo "$stats" | cut -d, -f4),$cpu,\"$ok\"" >>"$RAMP_CSV"
			if [[ "$ok" != yes ]]; then
				RAMP_NOTE[$m]="$rate/s: $ok"
				break
			fi
			RAMP_MAX[$m]=$rate
		done
	fi
}

# ---------------------------------------------------------------------------
# 1, 2: native logical replication

if ! skip latency || ! skip ramp; then
	log "native logical replication: initial sync of lr_items ($ROWS rows)"
	src -c "CREATE PUBLICATION pub_lr FOR TABLE lr_items"
	dst -c "CREATE SUBSCRIPTION sub_lr CONNECTION '$SRC_URL/bench' PUBLICATION pub_lr"
	until [[ "$(dst -c "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" == 0 &&
		"$(dst -c "SELECT count(*) FROM lr_items")" == "$ROWS" ]]; do sleep 0.2; done
	bench_method native lr_items
	dst -c "DROP SUBSCRIPTION sub_lr" # and its slot: no walsender decodes lockstep's load
	src -c "DROP PUBLICATION pub_lr"
fi

# ---------------------------------------------------------------------------
# 1, 2, 4: lockstep realtime

cat >"$W/lockstep.yaml" <<YAML
state: sqlite:state.db
databases:
  src: $SRC_URL/bench
  dst: $DST_URL/bench
  pgsrc: $SRC_URL/pgb
  pgdst: $DST_URL/pgb
jobs:
  lk:
    source: {db: src, table: lk_items}
    target: {db: dst, table: lk_items}
    mode: realtime
    batch: 1000
  accounts:
    source: {db: pgsrc, table: pgbench_accounts}
    target: {db: pgdst, table: pgbench_accounts, create: true}
    mode: realtime
    batch: 5000
YAML

lk_stop() {
	kill -TERM "$LKPID"
	wait "$LKPID" || { echo "bench: lockstep run exited $?" >&2; tail -20 "$W/run.err" >&2; exit 1; }
	LKPID=
}
# `run` runs every real-time job: its config leaves out the pgbench job of figure 3.
sed '/^  accounts:/,$d' "$W/lockstep.yaml" >"$W/run.yaml"
# Starts `lockstep run` and waits until job lk streams and has caught up.
lk_start() {
	"$LK" -c "$W/run.yaml" run >>"$W/run.out" 2>>"$W/run.err" &
	LKPID=$!
	until [[ "$(dst -c "SELECT count(*) FROM lockstep_sync.position WHERE job = 'lk' AND pos LIKE '%\"stream\"%'" 2>/dev/null)" == 1 ]]; do
		kill -0 "$LKPID" 2>/dev/null || { tail -20 "$W/run.err" >&2; exit 1; }
		sleep 0.2
	done
	[[ "$(drain lk_items "$(now)")" != timeout ]] || { echo "bench: lockstep did not catch up" >&2; exit 1; }
}

if ! skip latency || ! skip ramp; then
	log "lockstep realtime: first start (snapshot of lk_items, $ROWS rows)"
	lk_start
	bench_method lockstep lk_items
	lk_stop
fi

RSS_SECOND='' RSS_LAST='' RSS_PEAK=''
if ! skip rss; then
	log "lockstep RSS: ${RSS_MINUTES} min at 1000 updates/s"
	lk_start
	n=$((RSS_MINUTES * 60))
	load lk_items 1000 "$n" "$W/pgbench.rss" &
	LOADPID=$!
	echo "second,vmrss_kb" >"$RSS_CSV"
	for ((s = 1; s <= n; s++)); do
		sleep 1
		kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$LKPID/status")
		echo "$s,$kb" >>"$RSS_CSV"
	done
	wait "$LOADPID"
	rss_tps=$(pgb_tps "$W/pgbench.rss")
	rss_drain=$(drain lk_items "$(now)")
	lk_stop
	# Minute 2 (seconds 61-120), and the last minute; with RSS_MINUTES=1, the only minute.
	read -r RSS_SECOND RSS_LAST RSS_PEAK < <(awk -F, -v n="$n" 'NR > 1 {
	    if ($1 > 60 && $1 <= 120 || n <= 60) {a += $2; na++}
	    if ($1 > n - 60) {b += $2; nb++}
	    if ($2 > p) p = $2}
	  END {printf "%.0f %.0f %d\n", a / na, b / nb, p}' "$RSS_CSV")
	log "RSS: minute 2 avg ${RSS_SECOND} kB, last minute avg ${RSS_LAST} kB, peak ${RSS_PEAK} kB (source tps $rss_tps, drain ${rss_drain}s)"
fi

# ---------------------------------------------------------------------------
# 3: source write overhead of the capture triggers (pgbench)

declare -A PGB
if ! skip pgbench; then
	log "pgbench -i -s $PGB_SCALE"
	"$PGBENCH" -h 127.0.0.1 -p "$SP" -U postgres -i -q -s "$PGB_SCALE" pgb >"$W/pgbench-init.log" 2>&1
	cat >"$W/single.pgbench" <<EOF
\\set aid random(1, 100000 * :scale)
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
EOF
	pgb() { # WORKLOAD CAPTURE RUN
		local f=() out=$W/pgb.$1.$2.$3
		[[ $1 == single ]] && f=(-f "$W/single.pgbench")
		"$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -d pgb -qAtX -c "CHECKPOINT"
		PGOPTIONS="-c synchronous_commit=$SYNC_COMMIT" "$PGBENCH" -h 127.0.0.1 -p "$SP" -U postgres \
			"${f[@]}" -c "$PGB_CLIENTS" -j 2 -T "$PGB_SECONDS" pgb >"$out" 2>&1
		local v
		v=$(pgb_tps "$out")
		echo "$stamp,$1,$2,$3,$PGB_SCALE,$PGB_CLIENTS,$PGB_SECONDS,$v" >>"$PGB_CSV"
		PGB[$1.$2]="${PGB[$1.$2]:-} $v"
		log "pgbench $1 capture=$2 run $3: $v tps"
	}
	for ((r = 1; r <= PGB_RUNS; r++)); do
		pgb tpcb off "$r"
		pgb single off "$r"
		"$LK" -c "$W/lockstep.yaml" sync accounts --json >"$W/sync.out" 2>>"$W/sync.err" ||
			{ tail -20 "$W/sync.err" >&2; exit 1; }
		n=$("$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -d pgb -qAtX -c \
			"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pgbench_accounts'::regclass AND tgname LIKE 'lockstep_cdc%'")
		[[ "$n" == 3 ]] || { echo "bench: expected 3 capture triggers, found $n" >&2; exit 1; }
		pgb tpcb on "$r"
		pgb single on "$r"
		"$LK" -c "$W/lockstep.yaml" uninstall accounts >>"$W/sync.out" 2>>"$W/sync.err"
	done
fi

# ---------------------------------------------------------------------------
# report

mean() { awk '{for (i = 1; i <= NF; i++) {s += $i; n++}} END {if (n) printf "%.0f", s / n; else print "-"}' <<<"$1"; }
report=$W/report.md
{
	echo "# lockstep real-time benchmark"
	echo
	echo "$stamp, commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
		"$(nproc) cores, $("$BIN/postgres" --version), lockstep $("$LK" version 2>&1 | head -1 | awk '{print $2}')" \
		"($LK); load average at the start: $LOAD0, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"\
		"(other work on the machine skews every figure)."
	echo "Two clusters on this machine (fsync off); load: pgbench, $CLIENTS clients, one single-row UPDATE" \
		"per transaction, source sessions synchronous_commit=$SYNC_COMMIT; $ROWS rows."
	echo
	if ! skip latency; then
		echo "## 1. Latency, source commit to target commit, 1,000 updates/s for ${DURATION} s"
		echo
		echo "| method | source tx/s | applied | p50 ms | p95 ms | p99 ms | max ms | drain s | max backlog | CPU % |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for m in native lockstep; do
			IFS=, read -r a b c d e f g h i <<<"${LAT[$m]}"
			echo "| $m | $a | $b | $c | $d | $e | $f | $g | $h | $i |"
		done
		IFS=, read -r _ _ nc nd ne nf _ _ ni <<<"${LAT[native]}"
		IFS=, read -r _ _ lc ld le lf _ _ li <<<"${LAT[lockstep]}"
		echo "| **ratio lockstep / native** | | | $(ratio "$lc" "$nc") | $(ratio "$ld" "$nd") | $(ratio "$le" "$ne") | $(ratio "$lf" "$nf") | | | $(ratio "$li" "$ni") |"
		echo
		echo "\"applied\" counts target row writes: lockstep writes a key's current row, so two updates"
		echo "of one key before it reads them are applied once. \"drain\": from the load's end until the"
		echo "target's sum(v) equals the source's (polled every 50 ms with psql). \"max backlog\": updates"
		echo "the target lacked, sampled each second (target read first, then source: it includes about"
		echo "0.1-0.2 s of sampling skew, i.e. 100-200 updates at 1,000/s). \"CPU %\": of one core, from the"
		echo "load's start to the drain, for the walsender + apply worker, or lockstep + its two sessions."
		echo
	fi
	if ! skip ramp; then
		echo "## 2. Highest rate sustained for ${RAMP_DURATION} s (steps: $RAMP_RATES updates/s; drain ≤ ${DRAIN_OK} s)"
		echo
		echo "| method | highest sustained updates/s | first step not sustained |"
		echo "|---|---:|---|"
		for m in native lockstep; do
			echo "| $m | ${RAMP_MAX[$m]} | ${RAMP_NOTE[$m]:-none (all steps sustained)} |"
		done
		echo "| **ratio lockstep / native** | $(ratio "${RAMP_MAX[lockstep]}" "${RAMP_MAX[native]}") | |"
		echo
		echo "\"source-limited\": the source did not reach 90% of the rate (with lockstep, its capture"
		echo "triggers run in the writers' transactions). Per step, also in bench/results/realtime-ramp.csv:"
		echo
		echo "| method | rate | source tx/s | drain s | p99 ms | CPU % | sustained |"
		echo "|---|---:|---:|---:|---:|---:|---|"
		awk -F, -v st="$stamp" '$1 == st {gsub(/"/, "", $10); printf "| %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $5, $6, $8, $9, $10}' "$RAMP_CSV"
		echo
		echo "(the 1,000/s step is the latency run when RAMP_DURATION = DURATION)"
		echo
	fi
	if ! skip pgbench; then
		echo "## 3. Source write overhead of the capture triggers (pgbench -s $PGB_SCALE -c $PGB_CLIENTS -T $PGB_SECONDS, mean of $PGB_RUNS)"
		echo
		echo "| workload | TPS without | TPS with capture | ratio with / without |"
		echo "|---|---:|---:|---:|"
		for wl in tpcb single; do
			a=$(mean "${PGB[$wl.off]}"); b=$(mean "${PGB[$wl.on]}")
			name="TPC-B-like (pgbench default)"
			[[ $wl == single ]] && name="single-row UPDATE pgbench_accounts by random aid"
			echo "| $name | $a (${PGB[$wl.off]# }) | $b (${PGB[$wl.on]# }) | $(ratio "$b" "$a") |"
		done
		echo
	fi
	if ! skip rss; then
		echo "## 4. lockstep RSS, ${RSS_MINUTES} min streaming at 1,000 updates/s (VmRSS each second)"
		echo
		echo "| minute-2 average | last-minute average | ratio | peak | flat (within 10%) |"
		echo "|---:|---:|---:|---:|---|"
		r=$(ratio "$RSS_LAST" "$RSS_SECOND")
		flat=$(awk -v r="$r" 'BEGIN {print (r <= 1.10) ? "yes" : "no"}')
		echo "| $(fmt "$(echo "$RSS_SECOND / 1024" | bc -l)") MiB | $(fmt "$(echo "$RSS_LAST / 1024" | bc -l)") MiB | $r |" \
			"$(fmt "$(echo "$RSS_PEAK / 1024" | bc -l)") MiB | $flat |"
		echo
	fi
} >"$report"
# one TSV line per target for bench/all.sh (BENCH_SUMMARY): figure, lockstep, baseline,
# ratio, target, verdict
summary() { [[ -z "${BENCH_SUMMARY:-}" ]] || printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_SUMMARY"; }
okif() { awk -v r="$1" "BEGIN {print (r != \"-\" && r $2) ? \"met\" : \"not met\"}"; }
if ! skip latency; then
	IFS=, read -r _ _ _ _ ne _ _ _ _ <<<"${LAT[native]}"
	IFS=, read -r _ _ _ _ le _ _ _ _ <<<"${LAT[lockstep]}"
	r=$(ratio "$le" "$ne")
	summary "real-time latency p99 at 1,000 updates/s for ${DURATION} s (ms)" "$le" "$ne (native logical replication)" \
		"$r" "≤ 1.5" "$(okif "$r" "<= 1.5")"
fi
if ! skip ramp; then
	r=$(ratio "${RAMP_MAX[lockstep]}" "${RAMP_MAX[native]}")
	summary "highest update rate sustained for ${RAMP_DURATION} s (steps $RAMP_RATES)" "${RAMP_MAX[lockstep]}" \
		"${RAMP_MAX[native]} (native logical replication)" "$r" "≥ 1" "$(okif "$r" ">= 1")"
fi
if ! skip pgbench; then
	for wl in tpcb single; do
		a=$(mean "${PGB[$wl.off]}"); b=$(mean "${PGB[$wl.on]}")
		name="TPC-B-like"
		[[ $wl == single ]] && name="single-row UPDATE"
		r=$(ratio "$b" "$a")
		summary "source pgbench TPS with the capture triggers, $name" "$b" "$a (no triggers)" "$r" \
			"≥ 0.75 (≤ 25% fewer)" "$(okif "$r" ">= 0.75")"
	done
fi
if ! skip rss; then
	r=$(ratio "$RSS_LAST" "$RSS_SECOND")
	summary "lockstep RSS streaming ${RSS_MINUTES} min at 1,000 updates/s, last minute / minute 2" \
		"$(fmt "$(echo "$RSS_LAST / 1024" | bc -l)") MiB (peak $(fmt "$(echo "$RSS_PEAK / 1024" | bc -l)"))" \
		"$(fmt "$(echo "$RSS_SECOND / 1024" | bc -l)") MiB (minute 2)" "$r" "≤ 1.10" "$(okif "$r" "<= 1.10")"
fi
warn=$(grep -c 'level=\(warn\|error\)' "$W/run.err" 2>/dev/null || true)
[[ "${warn:-0}" == 0 ]] || { echo "lockstep run logged $warn warnings/errors:"; grep 'level=\(warn\|error\)' "$W/run.err" | head -5; } >>"$report"
cp "$report" "$RES/REPORT-realtime.md"
cp "$W/run.err" "$RES/realtime-run.log" 2>/dev/null || true
cat "$report"
