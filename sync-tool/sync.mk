# sync-tool make targets; included by the root Makefile (`include sync-tool/sync.mk`).
# Recipes run from the repository root whatever the current directory of make is.
SYNC_TOOL_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)

.PHONY: test-sync bench-sync-pg bench-sync-mysql bench-sync-snapshot

# Unit + integration tests (need PostgreSQL, MariaDB and etcd from tests/services/up.sh;
# SYNC_TESTS_SKIP=1 skips the service tests).
test-sync:
	cd $(SYNC_TOOL_ROOT) && cargo test -p sync-tool

# PostgreSQL -> etcd: dump and stream rows/s next to the raw etcd write rate, lag p50/p99,
# peak RSS during a 1M-row dump (BENCH_ROWS, BENCH_STREAM_ROWS override the sizes).
bench-sync-pg:
	cd $(SYNC_TOOL_ROOT) && cargo test --release -p sync-tool --test bench -- --ignored --nocapture --test-threads=1 bench_pg

bench-sync-mysql:
	cd $(SYNC_TOOL_ROOT) && cargo test --release -p sync-tool --test bench -- --ignored --nocapture --test-threads=1 bench_mysql

# Incremental snapshot of a 1M-row table added to a running sync (BENCH_ROWS), PostgreSQL then
# MariaDB: rows/s over the raw etcd rate, and the lag of the other table's stream fed at
# BENCH_FEED_RATE rows/s (default 1000) meanwhile.
bench-sync-snapshot:
	cd $(SYNC_TOOL_ROOT) && cargo test --release -p sync-tool --test bench -- --ignored --nocapture --test-threads=1 bench_snapshot
