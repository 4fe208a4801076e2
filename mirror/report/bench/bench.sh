#!/bin/bash
# make bench-report: mirror-report's throughput and peak memory on made-up exports of 1 M and
# 5 M lines (bench/gen_export.rs: a realistic mix of classes, conflicts and latencies, with a
# baseline target). Each export is written first (not timed), then read once from the page
# cache by one mirror-report process, which runs on one core (it has one thread). Prints
# lines/s and peak RSS for both sizes, and whether the targets are met:
# >= 500k lines/s and <= 64 MB, independent of the input size.
set -euo pipefail
cd "$(dirname "$0")/../../.."
SIZES=${BENCH_REPORT_LINES:-"1000000 5000000"}
DIR=${BENCH_REPORT_DIR:-$(mktemp -d /tmp/bench-report.XXXXXX)}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p mirror-report --features bench-generator --bins
BIN=$TARGET/release
trap 'rm -f "$DIR"/export-*.jsonl' EXIT
for n in $SIZES; do
  "$BIN/gen-export" "$n" --baseline > "$DIR/export-$n.jsonl"
done
python3 - "$BIN/mirror-report" "$DIR" $SIZES <<'PY'
import os, resource, subprocess, sys, time
exe, d, sizes = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]]
rows = []
for n in sizes:
    path = f"{d}/export-{n}.jsonl"
    # A fresh process per size: RUSAGE_CHILDREN's maxrss is the largest child so far, so
    # each run is measured in its own python child.
    code = ("import resource,subprocess,sys,time;t=time.monotonic();"
            "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL);"
            "print(r.returncode,time.monotonic()-t,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, "taskset", "-c", "0", exe, "--quiet", "--json",
                          "--main", "old", "--baseline", "old2", path], capture_output=True, text=True, check=True).stdout.split()
    rc, secs, rss_kb = int(out[0]), float(out[1]), int(out[2])
    if rc != 0:
        sys.exit(f"mirror-report exited with {rc} on {path}")
    rows.append((n, os.path.getsize(path), secs, n / secs, rss_kb / 1024))
print(f"{'lines':>10} {'MB':>8} {'seconds':>8} {'lines/s':>10} {'peak RSS MB':>12}")
for n, size, secs, rate, rss in rows:
    print(f"{n:>10} {size / 1e6:>8.0f} {secs:>8.2f} {rate:>10.0f} {rss:>12.1f}")
ok = all(r[3] >= 500_000 and r[4] <= 64 for r in rows)
if len(rows) > 1:
    print(f"RSS ratio {rows[-1][0] // rows[0][0]}x lines: {rows[-1][4] / rows[0][4]:.2f}")
print("targets (>= 500k lines/s, <= 64 MB):", "met" if ok else "NOT met")
PY
