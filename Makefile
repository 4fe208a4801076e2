# Build, install and test the MaxScale router modules (mirror, schemarouter) and sync-tool.
#
#   make                      build everything (release); the modules load into MaxScale only
#                             when MAXSCALE_SRC names a MaxScale source tree of a supported
#                             release (23.08.6, 24.02.3, 24.02.4, 24.08.0); MAXSCALE_BUILD (its
#                             configured build tree) is optional
#   make install MAXSCALE_SRC=<tree> [MAXSCALE_LIBDIR=<module dir>]
#                             build against that tree and copy libmirror.so and libschemarouter.so
#                             into MaxScale's module directory (default: the package's), after
#                             checking that it belongs to the same MaxScale release
#   make test                 install and start the test services, run every test; the
#                             end-to-end suite runs inside MaxScale when MAXSCALE_BIN and
#                             MAXSCALE_LIBDIR are set too
#   make test-pg-all          sync-tool's PostgreSQL suites on every major 10..18 (private servers)
#   make lint                 rustfmt --check and clippy -D warnings over the workspace (CI runs it)
#   make fuzz [FUZZ_SECONDS=300] protocol fuzzing of both routers inside MaxScale (MAXSCALE_* set)
#   make soak [SOAK_SECONDS=1800] sysbench through both routers inside MaxScale: RSS slope, sessions, errors
#   make bench-mirror / bench-schemarouter / bench-schemarouter-sessions / bench-sync-pg / bench-sync-mysql

CARGO ?= cargo
MODULES := mirror schemarouter
RELEASE_DIR := $(or $(CARGO_TARGET_DIR),target)/release
SERVICES := tests/services
# sync-tool's PostgreSQL suites (SYNC_PG_MAJOR=<major>: on a private server of that major, binaries
# from $(SERVICES)/pg_majors.sh); make test runs them on the Debian 15 and on PG_CI_MAJORS too
PG_MAJORS := 10 11 12 13 14 15 16 17 18
PG_CI_MAJORS := 10 18
PG_SUITE = $(CARGO) test -p sync-tool --test pg --test pg_restart --test pg_auth --test operations -- --test-threads=2 pg_ postgres

ifneq ($(MAXSCALE_SRC),)
MODULE_FEATURES := --features mirror/maxscale,schemarouter/maxscale
endif
BUILD_MODULES = $(CARGO) build --release -p mirror -p schemarouter $(MODULE_FEATURES)
# Where a packaged MaxScale keeps its modules (Debian/Ubuntu, then RHEL/SUSE).
MAXSCALE_LIBDIR ?= $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/maxscale /usr/lib64/maxscale))

.PHONY: all build install services lint test test-pg-all test-unit e2e bench-mirror bench-schemarouter bench-schemarouter-sessions bench-report fuzz soak clean

all: build

build:
ifeq ($(MODULE_FEATURES),)
	@echo "note: MAXSCALE_SRC not set: the modules are built for the test host only and will not load into MaxScale"
endif
	$(BUILD_MODULES)
	$(CARGO) build --release -p sync-tool

install:
	@test -n "$(MODULE_FEATURES)" || { echo "set MAXSCALE_SRC to a MaxScale source tree of your MaxScale's release (git clone --branch maxscale-<version>): MaxScale refuses modules not built against its headers"; exit 1; }
	@test -n "$(MAXSCALE_LIBDIR)" || { echo "set MAXSCALE_LIBDIR to MaxScale's module directory"; exit 1; }
	$(BUILD_MODULES)
	src/shim/check_install.sh "$(MAXSCALE_LIBDIR)" "$$(cat $(RELEASE_DIR)/modules-maxscale-version)" "$(or $(MAXSCALE_BIN),$(shell command -v maxscale))"
	for m in $(MODULES); do install -m 0755 $(RELEASE_DIR)/lib$$m.so "$(MAXSCALE_LIBDIR)/lib$$m.so"; done

services:
	$(SERVICES)/install.sh
	$(SERVICES)/up.sh

# House habits that catch defects before a test does. install.sh brings libclang (bindgen).
lint:
	$(SERVICES)/install.sh
	-command -v rustup >/dev/null && rustup component add rustfmt clippy
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The modules must exist as files before the test host loads them: build the workspace first.
test: services
ifneq ($(MODULE_FEATURES),)
	$(BUILD_MODULES)
endif
	$(CARGO) build --workspace
	$(CARGO) test --workspace -- --test-threads=2
	for m in $(PG_CI_MAJORS); do SYNC_PG_MAJOR=$$m $(PG_SUITE) || exit 1; done

test-pg-all: services
	$(SERVICES)/pg_majors.sh $(PG_MAJORS)
	for m in $(PG_MAJORS); do echo "== PostgreSQL $$m"; SYNC_PG_MAJOR=$$m $(PG_SUITE) || exit 1; done

# The protocol fuzzer against a real MaxScale (both routers) for FUZZ_SECONDS (default 300);
# FUZZ_SEED=<n> replays a run. Needs MAXSCALE_SRC, MAXSCALE_BIN and MAXSCALE_LIBDIR.
FUZZ_SECONDS ?= 300
fuzz: services
	$(BUILD_MODULES)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test -p router-tests --test maxscale_fuzz -- --test-threads=1 --nocapture

# sysbench through each router in a MaxScale of its own for SOAK_SECONDS (default 1800): prints
# the RSS slope (MB/h) per router; fails on an error, a session left or a growing RSS.
SOAK_SECONDS ?= 1800
soak: services
	$(BUILD_MODULES)
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test -p router-tests --test maxscale_soak -- --test-threads=1 --nocapture

test-unit:
	SYNC_TESTS_SKIP=1 $(CARGO) test --workspace --lib --bins

bench-mirror: services build
	tests/bench/sysbench_compare.sh mirror

bench-schemarouter: services build
	tests/bench/sysbench_compare.sh schemarouter

bench-schemarouter-sessions: services build
	WORKLOAD=short_sessions tests/bench/sysbench_compare.sh schemarouter

# mirror-report on made-up exports of 1 M and 5 M lines: lines/s and peak RSS.
bench-report:
	mirror/report/bench/bench.sh

clean:
	$(CARGO) clean

include sync-tool/sync.mk
