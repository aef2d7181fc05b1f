#!/usr/bin/env bash
# bench/all.sh - `make bench`: every benchmark of the project on this machine, one report.
#
#   bench/all.sh            full (under 30 minutes on 2 cores): 100k and 1M rows, 3 runs
#   bench/all.sh --quick    under 5 minutes, for development: 100k rows, 1 run, short loads
#
# Runs bench/run.sh (snapshot and poll vs COPY pipes), bench/realtime.sh (real-time mode vs
# native logical replication, trigger overhead under pgbench, RSS of a long stream),
# bench/http.sh (the HTTP API vs nginx) and bench/verify.sh (verify and repair vs reading
# both tables in key order) with the release build, each against baselines it
# measures in the same run, and writes bench/REPORT.md: the machine and commit, one table
# with every target of the issues' benchmark sections (lockstep, baseline, ratio, target,
# met or not), then each script's detailed report. Report-only: it never gates CI. A
# script that fails is reported as failed and the others still run (exit 1 at the end).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
SUDO=$([[ $(id -u) == 0 ]] || echo sudo)

missing=$(for p in wrk nginx time bc procps; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [[ -n "$missing" ]]; then
	echo "bench: installing" $missing
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing ||
		{ echo "bench: cannot install $missing" >&2; exit 2; }
fi
# the packaged nginx service is not needed (bench/http.sh starts its own on a free port)
$SUDO systemctl disable --now nginx >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1 || true

(cd "$root" && cmake --preset release >/dev/null && cmake --build build-release -j "$(nproc)" >/dev/null) ||
	{ echo "bench: the release build failed" >&2; exit 2; }
export LK_BIN=$root/build-release/lockstep
mkdir -p "$here/results"
S=$(mktemp /tmp/lk-bench-summary.XXXXXX)
export BENCH_SUMMARY=$S
trap 'rm -f "$S"' EXIT
t_start=$SECONDS
# Before anything is written (the report below replaces bench/REPORT.md, a tracked file).
tree_state=$(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo 'with local changes' || echo clean)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A took status

step() { # name script env...
	local name=$1 script=$2 t0=$SECONDS
	shift 2
	echo "=== bench: $name ($script $*)"
	if env "$@" "$here/$script" >"$here/results/$name.log" 2>&1; then status[$name]=ok; else status[$name]="FAILED (exit $?; bench/results/$name.log)"; fi
	took[$name]=$((SECONDS - t0))
	echo "=== bench: $name: ${status[$name]} in ${took[$name]} s"
	[[ ${status[$name]} == ok ]] || tail -15 "$here/results/$name.log"
}

if ((quick)); then
	step snapshot-poll run.sh ROWS_LIST=100000 RUNS=1 POLL_ROWS=50000
	step realtime realtime.sh DURATION=10 RAMP_DURATION=10 RAMP_RATES="1000 4000" PGB_SECONDS=5 PGB_RUNS=1 RSS_MINUTES=1
	step http http.sh RUNS=1 DURATION=5
	step verify verify.sh ROWS_LIST=100000 RUNS=1 DRIFT_ROWS=100000
else
	step snapshot-poll run.sh ROWS_LIST="100000 1000000" RUNS=3 POLL_ROWS=100000
	step realtime realtime.sh DURATION=30 RAMP_DURATION=20 PGB_SECONDS=10 PGB_RUNS=3 RSS_MINUTES=10
	step http http.sh RUNS=3 DURATION=10
	step verify verify.sh ROWS_LIST="100000 1000000" RUNS=3 DRIFT_ROWS=1000000
fi

pg=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
report=$here/REPORT.md
{
	echo "# lockstep benchmark report"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		"($tree_state), $( ((quick)) && echo '`--quick`' || echo full) mode, $((SECONDS - t_start)) s."
	echo "Machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/Mem:/ {print $2}') GiB," \
		"$(/usr/lib/postgresql/"$pg"/bin/postgres --version 2>/dev/null), Linux $(uname -r);" \
		"load average at the start $load0, at the end $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)."
	echo "Every baseline was measured in this run on this machine, on throw-away PostgreSQL clusters (fsync off)."
	echo
	echo "## Targets"
	echo
	echo "| figure | lockstep | baseline (same run) | ratio | target | met |"
	echo "|---|---:|---:|---:|---|---|"
	awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, ($6 ~ /^met/ ? $6 : "**" $6 "**")}' "$S"
	for n in snapshot-poll realtime http verify; do
		[[ ${status[$n]:-} == ok ]] || echo "| $n benchmarks | ${status[$n]:-not run} | | | | **not measured** |"
	done
	echo "| daemon RSS after 30 min of mixed work vs after 2 min | not part of \`make bench\`: \`make soak-rss\` (30 min) | | | within 10% | see the soak |"
	echo
	echo "Durations: $(for n in snapshot-poll realtime http verify; do echo -n "$n ${took[$n]:-0} s; "; done)"
	echo
	for n in snapshot-poll realtime http verify; do
		f=$here/results/REPORT-$n.md
		if [[ ${status[$n]:-} == ok && -f $f ]]; then
			echo "---"
			echo
			sed 's/^# /## /' "$f"
			echo
		fi
	done
} >"$report"
cat "$report"
for n in snapshot-poll realtime http verify; do [[ ${status[$n]:-} == ok ]] || exit 1; done
exit 0
