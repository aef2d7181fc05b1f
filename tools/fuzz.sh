#!/usr/bin/env bash
# fuzz.sh - runs the libFuzzer targets of fuzz/ (built by `cmake --preset fuzz`; `make fuzz`
# builds them and calls this). For each target, one after the other:
#   1. replay: every input of fuzz/corpus/T (seeds) and fuzz/regress/T (past crashes) once,
#      without fuzzing (-runs=0), so a fixed crash stays fixed;
#   2. fuzz for FUZZ_SECONDS (default 600; 0 skips this step) into build-fuzz/corpus/T,
#      with fuzz/corpus/T and fuzz/regress/T as read-only seeds and fuzz/T.dict if present.
# Both steps add the libFuzzer flags of fuzz/T.options if present (one a line, # comments).
# Prints one line per target, then "fuzz: N targets: N passed, N failed, 0 skipped" (also
# appended as "fuzz P F S" to the file $LK_TEST_COUNTS names, for .ci/run); stops with a
# non-zero status at the first target that crashes, leaks, times out, runs out of memory or
# reports undefined behaviour; its input is saved under build-fuzz/artifacts/ and its log
# under build-fuzz/fuzz-logs/.
#
#   tools/fuzz.sh [TARGET...]        (default: every fuzz/fuzz_*.c)
#   FUZZ_SECONDS=30 tools/fuzz.sh    (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-600}
build=${FUZZ_BUILD:-build-fuzz}
common=(-rss_limit_mb=1024 -timeout=10 -print_final_stats=1)
[[ "$seconds" =~ ^[0-9]+$ ]] || {
	echo "fuzz: FUZZ_SECONDS must be a whole number of seconds, not '$seconds'" >&2
	exit 2
}
if [ $# -gt 0 ]; then
	targets=("$@")
else
	targets=()
	for f in fuzz/fuzz_*.c; do
		t=${f#fuzz/}
		targets+=("${t%.c}")
	done
fi
mkdir -p "$build/fuzz-logs" "$build/artifacts"

passed=0

# The closing count line, and its record for .ci/run; $1 is the number of failed targets.
counts() {
	echo "fuzz: $((passed + $1)) targets: $passed passed, $1 failed, 0 skipped"
	if [ -n "${LK_TEST_COUNTS:-}" ]; then
		echo "fuzz $passed $1 0" >>"$LK_TEST_COUNTS"
	fi
}

# The value of libFuzzer's final "stat::NAME: N" line in log $1.
final_stat() {
	sed -n "s/^stat::$2: *\([0-9]*\).*/\1/p" "$1" | tail -1
}

# Prints the end of log $2 and where the input is, then fails.
failed() {
	local t=$1 log=$2 what=$3
	echo "fuzz: $t: FAILED ($what); log: $log" >&2
	grep -E 'ERROR|WARNING|runtime error|SUMMARY|^    #[0-9]' "$log" | head -40 >&2 || true
	grep -E 'Test unit written to|Running: ' "$log" | tail -2 >&2 || true
	echo "fuzz: reproduce with $build/fuzz/$t FILE; once fixed, add FILE to fuzz/regress/$t/" >&2
	counts 1
	exit 1
}

for t in "${targets[@]}"; do
	bin=$build/fuzz/$t
	[ -x "$bin" ] || {
		echo "fuzz: $bin is missing: cmake --preset fuzz && cmake --build --preset fuzz" >&2
		counts 1
		exit 2
	}
	seeds=(fuzz/corpus/"$t")
	[ -d fuzz/regress/"$t" ] && seeds+=(fuzz/regress/"$t")
	dict=()
	[ -f fuzz/"$t".dict ] && dict=(-dict=fuzz/"$t".dict)
	opts=()
	if [ -f fuzz/"$t".options ]; then
		mapfile -t opts < <(sed -e 's/#.*//' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' \
			-e '/^$/d' fuzz/"$t".options)
	fi

	log=$build/fuzz-logs/$t.replay.log
	"$bin" "${common[@]}" "${opts[@]}" -runs=0 -artifact_prefix="$build/artifacts/$t-" \
		"${seeds[@]}" >"$log" 2>&1 || failed "$t" "$log" "replay of ${seeds[*]}"
	replayed=$(final_stat "$log" number_of_executed_units)
	if [ "$seconds" -eq 0 ]; then
		echo "fuzz: $t: replay of ${seeds[*]} ok (${replayed:-?} runs)"
		passed=$((passed + 1))
		continue
	fi

	log=$build/fuzz-logs/$t.log
	mkdir -p "$build/corpus/$t"
	start=$(date +%s)
	"$bin" "${common[@]}" "${opts[@]}" -max_total_time="$seconds" \
		-artifact_prefix="$build/artifacts/$t-" "${dict[@]}" "$build/corpus/$t" "${seeds[@]}" >"$log" 2>&1 ||
		failed "$t" "$log" "after $(($(date +%s) - start)) s of fuzzing"
	echo "fuzz: $t: replay ok (${replayed:-?} runs); $(final_stat "$log" number_of_executed_units)" \
		"executions in $(($(date +%s) - start)) s ($(final_stat "$log" average_exec_per_sec)/s)," \
		"corpus $(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2) inputs" \
		"($(find "$build/corpus/$t" -type f | wc -l) files in $build/corpus/$t)," \
		"peak RSS $(final_stat "$log" peak_rss_mb) MiB, 0 crashes"
	passed=$((passed + 1))
done
counts 0
