#!/usr/bin/env bash
# bench/verify.sh - `lockstep verify` against reading both tables in key order (issue 19),
# measured in the same run on this machine (report only; never gates CI).
#
#   bench/verify.sh              ROWS_LIST="100000 1000000" RUNS=3 DRIFT_ROWS=1000000
#   bench/verify.sh --quick      100k rows, 1 run, the drift figures on 100k rows
#
# Environment (defaults in brackets):
#   LK_BIN      lockstep to measure [build-release/lockstep, else build/lockstep]
#   ROWS_LIST   table sizes of the unchanged-table figures ["100000 1000000"]
#   RUNS        repetitions of each measurement; the report gives the median [min-max] [3]
#   DRIFT_ROWS  table size of the drift figures; 0 skips them [1000000]
#   DRIFT       rows changed straight in the target: 60% updated, 20% deleted, 20% extra [1000]
#
# Two throw-away clusters (source, target) from tests/harness/pg-test-env.sh, as in
# bench/run.sh (fsync off); the job has the default `batch` (1000), which is verify's chunk. For each size the source `items` table (bigint key, text, int,
# numeric and timestamptz columns, ~200 bytes a row as text) is filled with
# generate_series, the target is filled by `lockstep sync` of a snapshot job and both are
# checked equal by an md5 over every row's text (the independent oracle). Then, RUNS times
# in alternation (so both see the same caches):
#   baseline: `COPY (SELECT * FROM items ORDER BY id) TO STDOUT` on the source and on the
#             target, two psql processes at once, output to /dev/null; wall time of the pair
#   verify:   `lockstep verify JOB --json` on the unchanged pair (must exit 0, equal); wall
#             time, its own CPU time (user + sys: the rest of the wall time it waits for the
#             servers), and peak RSS (the larger of /usr/bin/time's maximum resident set and
#             the highest VmRSS sampled every 50 ms)
# Drift (DRIFT_ROWS > 0): DRIFT rows changed straight in the target; `verify --json` (must
# exit 1 and count exactly DRIFT differences) RUNS times; then, when `lockstep verify --help`
# lists --repair, `verify --repair --json` RUNS times, the drift planted again before each
# and the target checked equal to the source by md5 after each.
# Report: stdout and bench/results/REPORT-verify.md; with BENCH_SUMMARY=FILE, one TSV line
# per target (figure, lockstep, baseline, ratio, target, verdict) for bench/all.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if [[ -z "${LK_BIN:-}" ]]; then
	LK_BIN=$root/build-release/lockstep
	[[ -x "$LK_BIN" ]] || LK_BIN=$root/build/lockstep
fi
LK=$LK_BIN
RUNS=${RUNS:-3}
ROWS_LIST=${ROWS_LIST:-"100000 1000000"}
DRIFT_ROWS=${DRIFT_ROWS:-1000000}
DRIFT=${DRIFT:-1000}
if [[ "${1:-}" == "--quick" ]]; then RUNS=1; ROWS_LIST=100000; DRIFT_ROWS=100000; fi
[[ -x "$LK" ]] || { echo "bench: no lockstep at $LK (cmake --preset release && cmake --build build-release)" >&2; exit 2; }
LK_COMMIT=$(git -C "$(dirname "$(readlink -f "$LK")")" rev-parse --short HEAD 2>/dev/null || echo unknown)

W=$(mktemp -d /tmp/lk-vbench.XXXXXX)
chmod 755 "$W"
cleanup() {
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
src() { "$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -d bench -qAtX -v ON_ERROR_STOP=1 "$@"; }
dst() { "$PSQL" -h 127.0.0.1 -p "$DP" -U postgres -d bench -qAtX -v ON_ERROR_STOP=1 "$@"; }
"$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -qAtX -c "CREATE DATABASE bench"
"$PSQL" -h 127.0.0.1 -p "$DP" -U postgres -qAtX -c "CREATE DATABASE bench"

schema="CREATE TABLE items (id bigint PRIMARY KEY, sku text NOT NULL, name text, email text,
  city text, qty integer, score integer, price numeric(12,2), balance numeric(16,4),
  created_at timestamptz, updated_at timestamptz, note text)"
src -c "$schema"
dst -c "$schema"

cat >"$W/lockstep.yaml" <<YAML
state: sqlite:state.db
databases:
  src: postgresql://postgres@127.0.0.1:$SP/bench
  dst: postgresql://postgres@127.0.0.1:$DP/bench
jobs:
  items:
    source: {db: src, table: items}
    target: {db: dst}
    mode: snapshot
YAML

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
spread() { sort -g | awk -v f="${1:-%.2f}" 'NR==1 {lo=$1} {hi=$1} END {printf f "-" f, lo, hi}'; }
med() { printf '%s\n' "$@" | median; }
sprd() { printf '%s\n' "$@" | spread; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0) print "-"; else printf "%.2f", a / b}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
summary() { [[ -z "${BENCH_SUMMARY:-}" ]] || printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_SUMMARY"; }
verdict() { if (($(awk "BEGIN {print ($1) ? 1 : 0}"))); then echo met; else echo "not met"; fi; }
jfield() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$W/out.json"; }

# Every row's text, hashed in key order: the oracle, independent of lockstep.
MD5_SQL="SELECT count(*) || ':' || md5(string_agg(md5(t::text), '' ORDER BY id)) FROM items t"
check_equal() { # what
	local a b
	a=$(src -c "$MD5_SQL"); b=$(dst -c "$MD5_SQL")
	[[ "$a" == "$b" ]] || { echo "bench: $1: source $a, target $b (md5 differ)" >&2; return 1; }
}

# Runs lockstep ARGS under /usr/bin/time (peak RSS in $W/time.txt) while sampling the
# process's VmRSS every 50 ms into $W/rss.txt (kB); output in $W/out.json, $W/err.txt, exit
# status in $W/rc, wall seconds in LK_SECS.
lk_timed() {
	local t0 t1 tp cp="" rc=0
	: >"$W/rss.txt"
	t0=$(now)
	/usr/bin/time -v -o "$W/time.txt" "$LK" -c "$W/lockstep.yaml" "$@" >"$W/out.json" 2>"$W/err.txt" &
	tp=$!
	while kill -0 "$tp" 2>/dev/null; do
		[[ -n "$cp" ]] || cp=$(pgrep -P "$tp" | head -1 || true)
		[[ -z "$cp" ]] || sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$cp/status" >>"$W/rss.txt" 2>/dev/null || true
		sleep 0.05
	done
	wait "$tp" || rc=$?
	t1=$(now)
	echo "$rc" >"$W/rc"
	LK_SECS=$(secs "$t0" "$t1")
}
lk_rc() { cat "$W/rc"; }
cpu_s() { awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$W/time.txt"; }
peak_kb() { { sed -n 's/.*Maximum resident set size (kbytes): //p' "$W/time.txt"; cat "$W/rss.txt"; } | grep . | sort -n | tail -1; }
lk_fail() { echo "bench: $1 (exit $(lk_rc))" >&2; cat "$W/err.txt" "$W/out.json" >&2; exit 1; }

seed() { # rows
	log "seeding $1 rows"
	src -c "TRUNCATE items" -c "INSERT INTO items SELECT i, 'SKU-' || lpad(i::text, 9, '0'),
	  'Name ' || (i % 9973) || ' ' || substr(md5(i::text), 1, 8), 'user' || i || '@example.com',
	  (ARRAY['Lisbon','Porto','Braga','Coimbra','Faro'])[1 + i % 5], i % 500, (i * 7) % 10000,
	  (i % 100000) / 100.0, (i * 13 % 10000000) / 10000.0,
	  timestamptz '2020-01-01' + i * interval '1 minute', timestamptz '2024-01-01' + i * interval '1.5 seconds',
	  'note ' || md5((i * 3)::text) || ' ' || md5((i * 5)::text)
	  FROM generate_series(1, $1) i" -c "VACUUM ANALYZE items" -c "CHECKPOINT"
	dst -c "TRUNCATE items"
	lk_timed sync items --full --json
	[[ $(lk_rc) == 0 ]] || lk_fail "lockstep sync of $1 rows failed"
	log "target filled by lockstep sync in $LK_SECS s"
	dst -c "VACUUM ANALYZE items" -c "CHECKPOINT"
	check_equal "after lockstep sync of $1 rows" || exit 1
	ROW_BYTES=$(src -c "SELECT round(avg(length(t::text))) FROM items t")
}

# Wall seconds of reading both tables in key order at once (text COPY, as verify reads text).
baseline() {
	local t0 t1 a b
	t0=$(now)
	"$PSQL" -h 127.0.0.1 -p "$SP" -U postgres -d bench -qX -v ON_ERROR_STOP=1 \
		-c "COPY (SELECT * FROM items ORDER BY id) TO STDOUT" >/dev/null &
	a=$!
	"$PSQL" -h 127.0.0.1 -p "$DP" -U postgres -d bench -qX -v ON_ERROR_STOP=1 \
		-c "COPY (SELECT * FROM items ORDER BY id) TO STDOUT" >/dev/null &
	b=$!
	wait "$a"
	wait "$b"
	t1=$(now)
	secs "$t0" "$t1"
}

verify_equal() { # rows: one timed `verify --json` of the unchanged pair
	lk_timed verify items --json
	[[ $(lk_rc) == 0 && $(jfield equal) == true && $(jfield sourceRows) == "$1" ]] ||
		lk_fail "verify of the unchanged $1-row pair did not say equal"
}

# DRIFT rows changed straight in the target of a ROWS-row pair: 60% updated, 20% deleted,
# 20% extra keys; the same rows each time (a repair restores them, this plants them again).
plant_drift() { # rows (at least 3 * DRIFT)
	local step=$(($1 / DRIFT)) upd=$((DRIFT * 6 / 10)) del=$((DRIFT * 2 / 10))
	local ext=$((DRIFT - upd - del))
	dst -c "UPDATE items SET note = note || ' drift', qty = qty + 1 WHERE id IN
	          (SELECT g * $step FROM generate_series(1, $upd) g)" \
		-c "DELETE FROM items WHERE id IN (SELECT g * $step + 1 FROM generate_series(1, $del) g)" \
		-c "INSERT INTO items SELECT id + $1, sku, name, email, city, qty, score, price, balance,
		      created_at, updated_at, note FROM items WHERE id IN
		      (SELECT g * $step + 2 FROM generate_series(1, $ext) g)"
}

report=$W/report.md
echo "| figure | rows | lockstep s [spread] | lockstep CPU s | baseline s [spread] | ratio | target | met | lockstep peak RSS |" >"$report"
echo "|---|---:|---:|---:|---:|---:|---|---|---:|" >>"$report"
peaks=()
plan=""
for rows in $ROWS_LIST; do
	seed "$rows"
	plan=$(src -c "EXPLAIN (COSTS off) SELECT * FROM items ORDER BY id" | tr '\n' ' ' | sed 's/  */ /g')
	base=(); ver=(); rss=(); cpu=()
	baseline >/dev/null # warm both caches once
	for ((r = 1; r <= RUNS; r++)); do
		base+=("$(baseline)")
		verify_equal "$rows"
		ver+=("$LK_SECS")
		rss+=("$(peak_kb)")
		cpu+=("$(cpu_s)")
		log "$rows rows, run $r: baseline ${base[-1]} s, verify $LK_SECS s (CPU ${cpu[-1]} s, $(jfield chunks) chunks), peak RSS ${rss[-1]} kB"
	done
	b=$(med "${base[@]}"); v=$(med "${ver[@]}"); q=$(ratio "$v" "$b")
	peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
	peaks+=("$peak")
	tgt="≤ 1.5"; met=$(verdict "$q <= 1.5")
	[[ $rows == 1000000 ]] || { tgt="(≤ 1.5 at 1M)"; met="info"; }
	printf '| verify, unchanged pair vs both tables read by COPY ... ORDER BY id side by side | %d | %s [%s] | %s | %s [%s] | %s | %s | %s | %s MiB |\n' \
		"$rows" "$v" "$(sprd "${ver[@]}")" "$(med "${cpu[@]}")" "$b" "$(sprd "${base[@]}")" "$q" "$tgt" "$met" "$(mib "$peak")" >>"$report"
	summary "verify of an unchanged $rows-row PG→PG table (s)" "$v" "$b (both tables read by COPY ... ORDER BY key at once)" \
		"$q" "≤ 1.5$([[ $rows == 1000000 ]] || echo ' (at 1M; info here)')" "$([[ $rows == 1000000 ]] && echo "$met" || echo "met (info)")"
done
lo=$(printf '%s\n' "${peaks[@]}" | sort -n | head -1); hi=$(printf '%s\n' "${peaks[@]}" | sort -n | tail -1)
flat=$(ratio "$hi" "$lo")
rss_met=$(verdict "$hi <= 32768 && $hi / $lo <= 1.10")
summary "peak RSS of verify at $(echo "$ROWS_LIST" | sed 's/ / and /g') rows" \
	"$(for k in "${peaks[@]}"; do echo -n "$(mib "$k") "; done)MiB" "-" "$flat (largest / smallest)" \
	"≤ 32 MiB and within 10%" "$rss_met"

drift_lines=()
repair_note=""
failed=0
# A wrong answer in the drift figures is reported (and the script exits 1 at the end), but
# the figures above are still written.
drift_bad() { # what
	echo "bench: $1 (exit $(lk_rc))" >&2
	cat "$W/err.txt" "$W/out.json" >&2
	drift_lines+=("| **$1** (exit $(lk_rc); bench/results/verify.log) | $DRIFT_ROWS | - | - |")
	failed=1
}
drift_figures() {
	local dver=() drss=() rep=() rrss=() repaired="" r
	[[ "${ROWS_LIST##* }" == "$DRIFT_ROWS" ]] || seed "$DRIFT_ROWS" # the table holds the last size
	plant_drift "$DRIFT_ROWS"
	for ((r = 1; r <= RUNS; r++)); do
		lk_timed verify items --json
		if [[ $(lk_rc) != 1 || $(jfield equal) != false || $(jfield differenceCount) != "$DRIFT" ]]; then
			drift_bad "verify of the drifted pair counted $(jfield differenceCount) differences, not $DRIFT"
			return
		fi
		dver+=("$LK_SECS"); drss+=("$(peak_kb)")
		log "drift, run $r: verify $LK_SECS s, $(jfield chunksDiffering) of $(jfield chunks) chunks differ"
	done
	drift_lines+=("$(printf '| verify, %d rows drifted in the target (%d updated, %d deleted, %d extra) | %d | %s [%s] | %s MiB |' \
		"$DRIFT" $((DRIFT * 6 / 10)) $((DRIFT * 2 / 10)) $((DRIFT - DRIFT * 6 / 10 - DRIFT * 2 / 10)) \
		"$DRIFT_ROWS" "$(med "${dver[@]}")" "$(sprd "${dver[@]}")" "$(mib "$(printf '%s\n' "${drss[@]}" | sort -n | tail -1)")")")
	summary "verify of a $DRIFT_ROWS-row table with $DRIFT rows drifted in the target (s)" "$(med "${dver[@]}")" \
		"-" "-" "- (info)" "met (info)"
	if ! "$LK" verify --help 2>&1 | grep -q -- '--repair'; then
		repair_note="\`lockstep verify --help\` of this binary lists no --repair: the repair figure was not measured."
		return
	fi
	for ((r = 1; r <= RUNS; r++)); do
		((r == 1)) || plant_drift "$DRIFT_ROWS"
		lk_timed verify items --repair --json
		if [[ $(lk_rc) != 0 ]]; then
			drift_bad "verify --repair of the drifted pair failed"
			return
		fi
		repaired=$(jfield repaired)
		if ! check_equal "after verify --repair (run $r)"; then
			drift_bad "verify --repair exited 0 but the target differs from the source (md5)"
			return
		fi
		rep+=("$LK_SECS"); rrss+=("$(peak_kb)")
		log "drift, run $r: verify --repair $LK_SECS s, repaired $repaired"
	done
	drift_lines+=("$(printf '| verify --repair of the same drift (then equal by md5; "repaired": %s) | %d | %s [%s] | %s MiB |' \
		"$repaired" "$DRIFT_ROWS" "$(med "${rep[@]}")" "$(sprd "${rep[@]}")" "$(mib "$(printf '%s\n' "${rrss[@]}" | sort -n | tail -1)")")")
	summary "verify --repair of $DRIFT drifted rows in a $DRIFT_ROWS-row table (s)" "$(med "${rep[@]}")" \
		"-" "-" "- (info)" "met (info)"
}
((DRIFT_ROWS <= 0)) || drift_figures

{
	echo "# lockstep verify benchmark"
	echo
	echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ'), lockstep at $LK (the checkout it was built in is at commit $LK_COMMIT)," \
		"$(nproc) cores, $("$BIN/postgres" --version), runs=$RUNS (median [min-max]);" \
		"load average at the start $LOAD0, at the end $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)."
	echo
	echo "Table \`items\`: bigint key and 11 text, integer, numeric and timestamptz columns, ${ROW_BYTES:-?} bytes a row as text;" \
		"the target filled by \`lockstep sync\` of a snapshot job and checked equal by md5. Baseline: \`COPY (SELECT * FROM items" \
		"ORDER BY id) TO STDOUT\` on both clusters by two psql processes at once, wall time of the pair (source plan: $plan)."
	echo
	cat "$report"
	echo
	echo "Peak RSS of verify: $(for k in "${peaks[@]}"; do echo -n "$(mib "$k") "; done)MiB at $(echo "$ROWS_LIST" | sed 's/ / and /g') rows;" \
		"largest / smallest $flat (target ≤ 32 MiB and within 10%: $rss_met)."
	if ((${#drift_lines[@]})); then
		echo
		echo "| drift figure | rows | lockstep s [spread] | peak RSS |"
		echo "|---|---:|---:|---:|"
		printf '%s\n' "${drift_lines[@]}"
	fi
	[[ -z "$repair_note" ]] || { echo; echo "$repair_note"; }
} >"$W/full.md"
mkdir -p "$here/results"
cp "$W/full.md" "$here/results/REPORT-verify.md"
cat "$W/full.md"
exit $failed
