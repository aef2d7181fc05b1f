#!/usr/bin/env bash
# bench/run.sh - table-sync benchmarks with same-run baselines (report only; never gates CI).
#
#   bench/run.sh [--quick]       ROWS_LIST="100000 1000000" RUNS=3 by default; --quick: 100k, 1 run
#
# Two throw-away clusters (source, target) from tests/harness/pg-test-env.sh. For each size:
#   snapshot: lockstep sync into an empty target vs `COPY (binary) TO STDOUT | COPY FROM STDIN`
#   poll:     POLL_ROWS updated rows into a full target of each size vs COPY into a temp
#             stage + INSERT ON CONFLICT
# Prints a markdown table (median of RUNS, [min-max] spread) to stdout and
# bench/results/REPORT-snapshot-poll.md; with BENCH_SUMMARY=FILE, also appends one TSV line
# per target (figure, lockstep, baseline, ratio, target, verdict) for bench/all.sh.
# Peak RSS: /usr/bin/time's maximum resident set; steady RSS: the median of VmRSS sampled
# every 50 ms while the run goes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
LK=${LK_BIN:-$root/build/lockstep}
RUNS=${RUNS:-3}
ROWS_LIST=${ROWS_LIST:-"100000 1000000"}
POLL_ROWS=${POLL_ROWS:-100000}
if [[ "${1:-}" == "--quick" ]]; then RUNS=1; ROWS_LIST=100000; POLL_ROWS=50000; fi
[[ -x "$LK" ]] || { echo "bench: build first (make)" >&2; exit 2; }

W=$(mktemp -d /tmp/lk-bench.XXXXXX)
chmod 755 "$W"
cleanup() {
	"$root/tests/harness/pg-test-env.sh" stop "$W/src" >/dev/null 2>&1 || true
	"$root/tests/harness/pg-test-env.sh" stop "$W/dst" >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT
"$root/tests/harness/pg-test-env.sh" start "$W/src" >/dev/null
"$root/tests/harness/pg-test-env.sh" start "$W/dst" >/dev/null
port() { sed -n 's/^PGPORT=//p' "$1/env"; }
bindir() { sed -n 's/^PGBINDIR=//p' "$1/env"; }
SP=$(port "$W/src"); DP=$(port "$W/dst"); BIN=$(bindir "$W/src")
PSQL="$BIN/psql"
src() { "$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -d bench -qAtX -v ON_ERROR_STOP=1 "$@"; }
dst() { "$PSQL" -h 127.0.0.1 -p "$DP" -U postgres -d bench -qAtX -v ON_ERROR_STOP=1 "$@"; }
"$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -qAtX -c "CREATE DATABASE bench"
"$PSQL" -h 127.0.0.1 -p "$DP" -U postgres -qAtX -c "CREATE DATABASE bench"

schema="CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, first_name text, last_name text,
  email text, phone text, status text, created_at timestamptz, updated_at timestamptz, metadata jsonb);
  CREATE INDEX IF NOT EXISTS users_updated_at ON users (updated_at);"
src -c "$schema"; dst -c "$schema"

cat >"$W/lockstep.yaml" <<YAML
state: sqlite:state.db
databases:
  src: postgresql://postgres@127.0.0.1:$SP/bench
  dst: postgresql://postgres@127.0.0.1:$DP/bench
jobs:
  snap:
    source: {db: src, table: users}
    target: {db: dst}
    mode: snapshot
    batch: 5000
  poll:
    source: {db: src, table: users}
    target: {db: dst}
    mode: poll
    cursor: updated_at
    batch: 5000
YAML

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
spread() { sort -g | awk -v f="${1:-%.0f}" 'NR==1 {lo=$1} {hi=$1} END {printf f "-" f, lo, hi}'; }
rss_kb() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
summary() { [[ -z "${BENCH_SUMMARY:-}" ]] || printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_SUMMARY"; }
verdict() { if [[ $(echo "$1" | bc -l) == 1 ]]; then echo met; else echo "not met"; fi; }
# Runs lockstep ARGS under /usr/bin/time (peak RSS in $W/time.txt) while sampling the
# process's VmRSS every 50 ms into $W/rss.txt (kB); output in $W/out.json, $W/err.txt.
lk_sampled() {
	: >"$W/rss.txt"
	/usr/bin/time -v -o "$W/time.txt" "$LK" -c "$W/lockstep.yaml" "$@" >"$W/out.json" 2>"$W/err.txt" &
	local tp=$! cp=""
	while kill -0 "$tp" 2>/dev/null; do
		[[ -n "$cp" ]] || cp=$(pgrep -P "$tp" | head -1 || true)
		[[ -z "$cp" ]] || sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$cp/status" >>"$W/rss.txt" 2>/dev/null || true
		sleep 0.05
	done
	wait "$tp" || { cat "$W/err.txt" >&2; exit 1; }
}
steady_kb() { { grep . "$W/rss.txt" || echo 0; } | median; }
# the larger of time's maximum resident set and the highest sample (the kernel's high-water
# mark lags the per-thread counters a little)
peak_kb() { { rss_kb "$W/time.txt"; cat "$W/rss.txt"; } | grep . | sort -n | tail -1; }
mib() { printf '%.1f' "$(echo "$1 / 1024" | bc -l)"; }

seed() {
	src -c "TRUNCATE users; INSERT INTO users SELECT i, 'First' || (i % 97), 'Last' || (i % 89),
	  'user' || i || '@example.com', '+1-555-' || lpad((i % 10000000)::text, 7, '0'),
	  (ARRAY['active','inactive','pending'])[1 + i % 3],
	  timestamptz '2020-01-01' + i * interval '1 minute', timestamptz '2023-01-01' + i * interval '1 second',
	  jsonb_build_object('plan', (ARRAY['free','pro','team'])[1 + i % 3], 'score', i % 1000)
	  FROM generate_series(1, $1) i"
	src -c "VACUUM ANALYZE users" -c "CHECKPOINT"
}

# Rows/s of the physical-limit baseline: COPY TO STDOUT | COPY FROM STDIN into an empty target.
copy_pipe_rate() {
	local t0 t1
	dst -c "TRUNCATE users" -c "CHECKPOINT"
	t0=$(now)
	"$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -d bench -qX -c "COPY users TO STDOUT $2" |
		"$PSQL" -h 127.0.0.1 -p "$DP" -U postgres -d bench -qX -c "COPY users FROM STDIN $2"
	t1=$(now)
	echo "$1 / $(secs "$t0" "$t1")" | bc -l
}

report="$W/report.md"
echo "| figure | rows | lockstep [spread] | baseline [spread] | ratio | target | met | lockstep RSS peak / steady |" >"$report"
echo "|---|---:|---:|---:|---:|---:|---|---:|" >>"$report"
snap_peaks=(); poll_peaks=()

# Poll: POLL_ROWS updated rows into a full target, vs COPY into a stage + one merge.
poll_bench() { # rows
	local rows=$1 lk base peak steady ratio
	dst -c "TRUNCATE users"
	"$LK" -c "$W/lockstep.yaml" sync poll --full >/dev/null 2>&1
	lk_rates=(); base_rates=(); rss=(); steadies=()
	for ((r = 1; r <= RUNS; r++)); do
		src -c "UPDATE users SET updated_at = now() + interval '$r hours', status = status || 'x'
		        WHERE id <= $POLL_ROWS" -c "CHECKPOINT"
		since=$(dst -c "SELECT max(updated_at) FROM users")
		t0=$(now)
		"$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -d bench -qX \
			-c "COPY (SELECT * FROM users WHERE updated_at > '$since' ORDER BY updated_at, id) TO STDOUT (FORMAT binary)" |
			"$PSQL" -h 127.0.0.1 -p "$DP" -U postgres -d bench -qX -v ON_ERROR_STOP=1 \
				-c "CREATE TEMP TABLE s (LIKE users)" -c "\\copy s from pstdin (format binary)" \
				-c "INSERT INTO users SELECT * FROM s ON CONFLICT (id) DO UPDATE SET first_name = EXCLUDED.first_name,
				    last_name = EXCLUDED.last_name, email = EXCLUDED.email, phone = EXCLUDED.phone,
				    status = EXCLUDED.status, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
				    metadata = EXCLUDED.metadata"
		t1=$(now)
		base_rates+=("$(echo "$POLL_ROWS / $(secs "$t0" "$t1")" | bc -l)")
		# The baseline applied the change already; make the target stale again for lockstep.
		dst -c "UPDATE users SET status = 'stale' WHERE id <= $POLL_ROWS" -c "CHECKPOINT"
		t0=$(now)
		lk_sampled sync poll --json
		t1=$(now)
		bad=$(dst -c "SELECT count(*) FROM users WHERE status = 'stale'")
		[[ "$bad" == 0 ]] || { echo "bench: poll left $bad stale rows" >&2; exit 1; }
		lk_rates+=("$(echo "$POLL_ROWS / $(secs "$t0" "$t1")" | bc -l)")
		rss+=("$(peak_kb)")
		steadies+=("$(steady_kb)")
	done
	lk=$(printf '%s\n' "${lk_rates[@]}" | median); base=$(printf '%s\n' "${base_rates[@]}" | median)
	peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
	steady=$(printf '%s\n' "${steadies[@]}" | median)
	poll_peaks+=("$peak")
	ratio=$(echo "$lk / $base" | bc -l)
	printf '| poll, %d updated rows into a full target (rows/s) | %d | %.0f [%s] | %.0f [%s] (COPY stage + merge) | %.2f | ≥ 0.60 | %s | %s / %s MiB |\n' \
		"$POLL_ROWS" "$rows" "$lk" "$(printf '%s\n' "${lk_rates[@]}" | spread)" "$base" \
		"$(printf '%s\n' "${base_rates[@]}" | spread)" "$ratio" "$(verdict "$ratio >= 0.6")" \
		"$(mib "$peak")" "$(mib "$steady")" >>"$report"
	summary "poll, $POLL_ROWS changed rows into a full $rows-row target (rows/s)" "$(printf %.0f "$lk")" \
		"$(printf %.0f "$base") (COPY stage + merge)" "$(printf %.2f "$ratio")" "≥ 0.60" "$(verdict "$ratio >= 0.6")"
}

for rows in $ROWS_LIST; do
	seed "$rows"
	lk_rates=(); base_rates=(); text_rates=(); rss=(); steadies=()
	for ((r = 1; r <= RUNS; r++)); do
		base_rates+=("$(copy_pipe_rate "$rows" "(FORMAT binary)")")
		text_rates+=("$(copy_pipe_rate "$rows" "")")
		dst -c "TRUNCATE users" -c "CHECKPOINT"
		t0=$(now)
		lk_sampled sync snap --full --json
		t1=$(now)
		n=$(dst -c "SELECT count(*) FROM users")
		[[ "$n" == "$rows" ]] || { echo "bench: target has $n rows, expected $rows" >&2; exit 1; }
		lk_rates+=("$(echo "$rows / $(secs "$t0" "$t1")" | bc -l)")
		rss+=("$(peak_kb)")
		steadies+=("$(steady_kb)")
	done
	lk=$(printf '%s\n' "${lk_rates[@]}" | median); base=$(printf '%s\n' "${base_rates[@]}" | median)
	text=$(printf '%s\n' "${text_rates[@]}" | median)
	peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
	steady=$(printf '%s\n' "${steadies[@]}" | median)
	snap_peaks+=("$peak")
	ratio=$(echo "$lk / $base" | bc -l)
	printf '| snapshot, text COPY pipe vs binary (like-for-like format, info) | %d | %.0f [%s] | %.0f | %.2f | - | - | - |\n' \
		"$rows" "$text" "$(printf '%s\n' "${text_rates[@]}" | spread)" "$base" "$(echo "$text / $base" | bc -l)" >>"$report"
	printf '| snapshot vs the text COPY pipe (info) | %d | %.0f | %.0f | %.2f | - | - | - |\n' \
		"$rows" "$lk" "$text" "$(echo "$lk / $text" | bc -l)" >>"$report"
	printf '| snapshot, empty target (rows/s) | %d | %.0f [%s] | %.0f [%s] (COPY binary pipe) | %.2f | ≥ 0.80 | %s | %s / %s MiB |\n' \
		"$rows" "$lk" "$(printf '%s\n' "${lk_rates[@]}" | spread)" "$base" \
		"$(printf '%s\n' "${base_rates[@]}" | spread)" "$ratio" "$(verdict "$ratio >= 0.8")" \
		"$(mib "$peak")" "$(mib "$steady")" >>"$report"
	summary "snapshot of $rows rows into an empty target (rows/s)" "$(printf %.0f "$lk")" \
		"$(printf %.0f "$base") (binary COPY pipe)" "$(printf %.2f "$ratio")" "≥ 0.80" "$(verdict "$ratio >= 0.8")"
	poll_bench "$rows"
done
rss_flat() { # name peaks...
	local name=$1 lo hi
	shift
	lo=$(printf '%s\n' "$@" | sort -n | head -1); hi=$(printf '%s\n' "$@" | sort -n | tail -1)
	summary "peak RSS of the $name at $(echo "$ROWS_LIST" | sed 's/ / and /g') rows" \
		"$(printf '%s\n' "$@" | while read -r k; do mib "$k"; echo -n " "; done)MiB" "-" \
		"$(printf %.2f "$(echo "$hi / $lo" | bc -l)") (largest / smallest)" \
		"≤ 32 MiB and within 10%" "$(verdict "$hi <= 32768 && $hi / $lo <= 1.10")"
}
rss_flat snapshot "${snap_peaks[@]}"
rss_flat poll "${poll_peaks[@]}"

{
	echo "# lockstep table-sync benchmark"
	echo
	echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores," \
		"$(free -g | awk '/Mem:/ {print $2}') GiB, $("$BIN/postgres" --version), runs=$RUNS (median [min-max])"
	echo
	cat "$report"
} | tee "$here/../bench/.last-report.md"
mkdir -p "$here/results"
cp "$here/../bench/.last-report.md" "$here/results/REPORT-snapshot-poll.md"
rm -f "$here/../bench/.last-report.md"
