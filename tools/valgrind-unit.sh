#!/usr/bin/env bash
# valgrind-unit.sh - runs every unit test executable (one per tests/unit/test_*.c) of a
# build folder (default build-valgrind, `make valgrind`) under valgrind memcheck, each to a
# log in BUILD/valgrind-logs/, and closes with
#
#   valgrind: 10 unit executables ran: 10 passed, 0 failed, 0 skipped
#
# (also appended as "valgrind P F S" to the file $LK_TEST_COUNTS names, for .ci/run). An
# executable fails on a memcheck error, a definite or indirect leak, a failed test, or when
# it is missing; it counts as skipped when cmocka skipped some of its cases. Every
# executable runs; the status is 1 when any failed. A failure prints its log.
#
#   tools/valgrind-unit.sh [BUILD]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

build=${1:-build-valgrind}
logs=$build/valgrind-logs
passed=0 failed=0 skipped=0
mkdir -p "$logs"
for src in tests/unit/test_*.c; do
	name=$(basename "$src" .c)
	exe=$build/tests/$name
	log=$logs/$name.log
	echo "valgrind: $exe"
	if ! valgrind -q --error-exitcode=1 --leak-check=full \
		--errors-for-leak-kinds=definite,indirect --suppressions=tools/valgrind.supp \
		"$exe" >"$log" 2>&1; then
		failed=$((failed + 1))
		echo "valgrind: $exe FAILED; its log ($log):"
		sed 's/^/    /' "$log"
	elif n=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test(s).*/\1/p' "$log" | head -1) && [ -n "$n" ]; then
		skipped=$((skipped + 1))
		echo "valgrind: $exe: cmocka skipped $n of its cases:"
		grep '^\[  SKIPPED \]' "$log" | sed 's/^/    /'
	else
		passed=$((passed + 1))
	fi
done
echo "valgrind: $((passed + failed)) unit executables ran: $passed passed, $failed failed," \
	"$skipped skipped"
if [ -n "${LK_TEST_COUNTS:-}" ]; then
	echo "valgrind $passed $failed $skipped" >>"$LK_TEST_COUNTS"
fi
[ "$failed" -eq 0 ]
