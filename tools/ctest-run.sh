#!/usr/bin/env bash
# ctest-run.sh - runs ctest in the current folder (a build folder) with the arguments given,
# always with --no-tests=error (a -L or -R that selects nothing fails) and with JUnit
# results written to Testing/lk-junit.xml, then counts what ran:
#
#   ctest: 40 ran: 40 passed, 0 failed, 0 skipped
#
# A test is skipped when CTest did not run it for its SKIP_RETURN_CODE (77) or a skip
# regular expression, or it is DISABLED, or it passed while cmocka skipped some of its
# cases ("[  SKIPPED ] N test(s)"). Not run because a fixture failed or the executable is
# missing counts as failed, as CTest counts it. The names of the skipped tests follow.
#
# Exit status: CTest's; else 1 when anything was skipped under CI or LK_REQUIRE_PG (the
# rule of tests/harness/lktest.py strict(): set to anything but "", 0, false, no or off);
# else 0. With LK_TEST_COUNTS naming a file, appends "ctest PASSED FAILED SKIPPED" to it
# (.ci/run sums them per tier).
#
#   cd build && ../tools/ctest-run.sh -j 2 -L unit --no-tests=error --output-on-failure
set -uo pipefail

junit=$PWD/Testing/lk-junit.xml
mkdir -p Testing
rm -f "$junit"
args=("$@")
case " $* " in
*" --no-tests=error "*) ;;
*) args+=(--no-tests=error) ;;
esac
# Passed tests' output in full, so that cmocka's closing "[  SKIPPED ]" line is in the
# JUnit file (CTest keeps 1 KiB of it by default).
ctest "${args[@]}" --test-output-size-passed 1048576 --output-junit "$junit"
rc=$?

# shellcheck disable=SC2016 # the program is Python
counts=$(/usr/bin/python3 - "$junit" <<'EOF'
import re
import sys
import xml.etree.ElementTree as ET

try:
    cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
except (OSError, ET.ParseError) as e:
    print("ctest-run: no JUnit results (%s)" % e, file=sys.stderr)
    sys.exit(1)
passed, failed, skipped = 0, 0, []
for c in cases:
    name, status = c.get("name"), c.get("status")
    why = c.find("skipped")
    why = why.get("message", "") if why is not None else ""
    out = c.findtext("system-out") or ""
    cm = re.search(r"^\[  SKIPPED \] (\d+) test\(s\)", out, re.M)
    if status == "run" and cm:
        skipped.append("%s (cmocka skipped %s of its cases)" % (name, cm.group(1)))
    elif status == "run":
        passed += 1
    elif status == "disabled":
        skipped.append("%s (DISABLED)" % name)
    elif status == "notrun" and why.startswith("SKIP_"):
        skipped.append("%s (%s)" % (name, why))
    else:  # fail, or not run for a failed fixture or a missing executable
        failed += 1
print(passed, failed, len(skipped))
for s in skipped:
    print("ctest: skipped: " + s, file=sys.stderr)
EOF
) || { echo "ctest-run: cannot count the tests (ctest exited $rc)" >&2; exit $((rc ? rc : 1)); }
read -r passed failed skipped <<<"$counts"
echo "ctest: $((passed + failed)) ran: $passed passed, $failed failed, $skipped skipped"
if [ -n "${LK_TEST_COUNTS:-}" ]; then
	echo "ctest $passed $failed $skipped" >>"$LK_TEST_COUNTS"
fi

env_on() {
	local v=${!1:-}
	v=${v,,}
	[[ -n "$v" && "$v" != 0 && "$v" != false && "$v" != no && "$v" != off ]]
}
if [ "$rc" -eq 0 ] && [ "$skipped" -gt 0 ] && { env_on CI || env_on LK_REQUIRE_PG; }; then
	echo "ctest: $skipped skipped under CI or LK_REQUIRE_PG, where nothing may skip" >&2
	rc=1
fi
exit "$rc"
