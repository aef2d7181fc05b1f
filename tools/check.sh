#!/usr/bin/env bash
# The one entry point for code hygiene: clang-format (zero diff) on src/, tests/ and fuzz/,
# clang-tidy and cppcheck on src/ with zero findings. Needs build/compile_commands.json
# (make build).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/compile_commands.json ] || { echo "check.sh: run 'make build' first" >&2; exit 2; }

files=$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'fuzz/*.c')
echo "check: clang-format"
clang-format --dry-run --Werror $files

echo "check: cppcheck"
cppcheck --quiet --project=build/compile_commands.json \
	--enable=warning,portability,performance --inline-suppr --error-exitcode=1 \
	--suppress=missingIncludeSystem -j "$(nproc)" 2>&1

echo "check: clang-tidy"
srcs=$(git ls-files 'src/*.c')
# one pass: its findings are shown, and xargs returns non-zero when any clang-tidy run failed
rc=0
out=$(printf '%s\n' $srcs | xargs -P "$(nproc)" -n 8 clang-tidy -p build --quiet \
	--extra-arg=-Wno-unknown-warning-option --warnings-as-errors='*' 2>&1) || rc=$?
printf '%s\n' "$out" | grep -v -E '^[0-9]+ warnings? generated|^Suppressed|^Use -header-filter' || true
[ "$rc" -eq 0 ] || exit 1
echo "check: ok"
