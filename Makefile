# A thin wrapper over CMake presets. `make demo` and `make test` are the whole set-up on a
# fresh Debian bookworm with git and make: both run `make deps` first when something is missing.

DEPS_PKGS := build-essential cmake ninja-build pkg-config libpq-dev libsqlite3-dev \
	libfyaml-dev libjansson-dev libcmocka-dev libxxhash-dev uuid-dev libmicrohttpd-dev \
	postgresql postgresql-contrib python3 python3-psycopg2 sqlite3 valgrind clang-format \
	clang-tidy cppcheck procps bc time python3-croniter python3-tz chromium chromium-driver \
	python3-selenium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=
# Every ctest call goes through tools/ctest-run.sh: --no-tests=error (a label or regex that
# selects nothing fails), then "ctest: N ran: N passed, N failed, N skipped"; under CI or
# LK_REQUIRE_PG a skipped test fails the call.
CTEST_RUN := $(CURDIR)/tools/ctest-run.sh

.PHONY: all build deps demo test test-unit test-integration asan test-asan tsan test-tsan valgrind check \
	soak bench bench-quick fuzz fuzz-build fuzz-regress clean format

all: build

deps:
	@missing=$$(for p in $(DEPS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing:" $$missing; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: everything is installed"; fi
	@tools/fetch-promtool.sh

build/build.ninja: CMakeLists.txt CMakePresets.json
	@$(MAKE) --no-print-directory deps
	cmake --preset dev >/dev/null

build: build/build.ninja
	cmake --build build -j $(JOBS)

demo: build
	./build/lockstep demo --once

test: build
	cd build && $(CTEST_RUN) -j $(JOBS) -L 'unit|integration' --no-tests=error \
		--output-on-failure $(CTEST_ARGS)

test-unit: build
	cd build && $(CTEST_RUN) -j $(JOBS) -L unit --no-tests=error --output-on-failure

test-integration: build
	cd build && $(CTEST_RUN) -j $(JOBS) -L integration --no-tests=error --output-on-failure \
		$(CTEST_ARGS)

asan:
	@$(MAKE) --no-print-directory deps
	cmake --preset asan >/dev/null && cmake --build build-asan -j $(JOBS)

test-asan: asan
	cd build-asan && LK_SCALE=$${LK_SCALE:-0.1} ASAN_OPTIONS=detect_leaks=1 \
		$(CTEST_RUN) -j $(JOBS) -L 'unit|integration' --no-tests=error --output-on-failure \
		$(CTEST_ARGS)

valgrind:
	@$(MAKE) --no-print-directory deps
	cmake --preset valgrind >/dev/null && cmake --build build-valgrind -j $(JOBS)
	tools/valgrind-unit.sh build-valgrind

# ThreadSanitizer over the integration tests whose processes run threads (HTTP server,
# real-time engine and writer, pool, lease and watch threads). Every report goes to a file
# under build-tsan/reports (a test that kills the daemon could miss a message on stderr):
# any file there fails the target. TSAN_TESTS names whole tests (integration.NAME); each
# must exist, so a renamed test cannot drop out of the tier unseen.
TSAN_TESTS ?= test_http_api|test_cluster|test_daemon|test_daemon_faults|test_realtime_writers|test_verify_daemon
tsan:
	@$(MAKE) --no-print-directory deps
	cmake --preset tsan >/dev/null && cmake --build build-tsan -j $(JOBS)

test-tsan: tsan
	@names=$$(cd build-tsan && ctest -N | sed -n 's/^ *Test *#[0-9]*: //p'); \
	for t in $$(echo '$(TSAN_TESTS)' | tr '|' ' '); do \
		echo "$$names" | grep -qx "integration\.$$t" || { \
			echo "test-tsan: TSAN_TESTS names $$t, but there is no test integration.$$t" >&2; \
			exit 1; }; \
	done
	rm -rf build-tsan/reports && mkdir -p build-tsan/reports
	cd build-tsan && LK_SCALE=$${LK_SCALE:-0.1} \
		TSAN_OPTIONS="log_path=$(CURDIR)/build-tsan/reports/tsan second_deadlock_stack=1" \
		$(CTEST_RUN) -j $(JOBS) -R '^integration\.($(TSAN_TESTS))$$' --no-tests=error \
		--output-on-failure $(CTEST_ARGS)
	@if ls build-tsan/reports/tsan* >/dev/null 2>&1; then \
		echo "ThreadSanitizer reports:"; head -60 build-tsan/reports/tsan*; exit 1; \
	else echo "tsan: no report"; fi

check: build
	tools/check.sh

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'fuzz/*.c')

# The chaos soak with a verdict (docs/soak.md): 30 minutes of faults (LK_SOAK_MINUTES),
# 3 with `make soak ARGS=--quick` or `make soak-quick` (CI); LK_SOAK_SEED replays a run.
.PHONY: soak-quick soak-rss
SOAK_ENV = LK_BIN=$(CURDIR)/build/lockstep PYTHONPATH=$(CURDIR)/tests/harness PYTHONDONTWRITEBYTECODE=1

soak: build
	$(SOAK_ENV) /usr/bin/python3 tests/slow/test_chaos_soak.py $(ARGS)

soak-quick: build
	$(SOAK_ENV) /usr/bin/python3 tests/slow/test_chaos_soak.py --quick

# The single-daemon RSS soak (tests/slow/test_rss_soak.py, CTest label slow; 30 minutes).
soak-rss: build
	cd build && $(CTEST_RUN) -L slow --no-tests=error --output-on-failure

bench: build
	bench/all.sh $(ARGS)

bench-quick: build
	bench/all.sh --quick

# libFuzzer targets (fuzz/README.md): clang with its runtimes and the build's libraries only,
# not all of `make deps`. FUZZ_SECONDS per target (CI: make fuzz FUZZ_SECONDS=30).
FUZZ_SECONDS ?= 600
FUZZ_PKGS := clang libclang-rt-14-dev cmake ninja-build pkg-config libpq-dev libsqlite3-dev \
	libfyaml-dev libjansson-dev libxxhash-dev uuid-dev libmicrohttpd-dev

fuzz-build:
	@missing=$$(for p in $(FUZZ_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make fuzz: installing:" $$missing; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) tools/fuzz.sh

fuzz-regress: fuzz-build
	FUZZ_SECONDS=0 tools/fuzz.sh

clean:
	rm -rf build build-asan build-valgrind build-release build-tsan build-fuzz
