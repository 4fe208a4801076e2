#!/bin/bash
# Compares a router module of ours with MaxScale's native one: one MaxScale, the native module
# and ours (installed as lib<router>_rs.so) each behind a listener, same servers, sysbench
# oltp_read_only runs alternating between the two. Prints QPS, p95 latency and ours/native
# (of the medians, and per round), and MaxScale's CPU time per query (or session) for each:
# the router's own cost, which a machine loaded by other work disturbs less than QPS. Each
# round also runs readconnroute to s1 alone: for the schemarouter (the sysbench tables are all
# on s1) the ceiling no router can pass, for the mirror what mirroring to s2 costs.
#
#   tests/bench/sysbench_compare.sh mirror|schemarouter
# Needs MAXSCALE_BIN, MAXSCALE_LIBDIR, the modules built with `make` (MAXSCALE_SRC set to
# the same release's source tree) and the test services (tests/services/up.sh).
# Knobs: ROUNDS (3), SECONDS_PER_RUN (20), THREADS (8), TABLES (4), TABLE_SIZE (10000),
# PS_MODE (auto: prepared statements; disable: every statement a COM_QUERY), PROFILE (1: perf
# splits MaxScale's CPU by module for each service),
# WORKLOAD: oltp_read_only (default; QPS), or short_sessions (each event connects, runs one
# point select and disconnects: sessions/s; tests/bench/short_sessions.lua).
#
# mirror also runs the slow-target scenario in the same MaxScale: the slow target is a MariaDB
# server of the benchmark's own (a copy of the sysbench tables) reached through a proxy
# (tests/bench/delay_proxy.py) that delays everything the server sends by SLOW_DELAY_MS (20)
# and everything it is sent by SLOW_UP_DELAY_MS (0). Server and proxy run at idle CPU priority
# (SCHED_IDLE; SLOW_PRIORITY=normal: as every other process), as a target on another host would:
# on the 2 shared cores its work would otherwise delay main and MaxScale, which is not what the
# scenario measures. sysbench oltp_read_only at a fixed SLOW_RATE (40 transactions/s) on
#   Async:  ours with sync=false, targets s1 (main) and the slow target;
#   Native: MaxScale's mirror, same targets (it waits for the slow target);
#   Direct: readconnroute to s1 alone;
# and, for reference, Ours (sync=true, s2 not slowed) at the same rate.
# It prints QPS and p95 of each, p95 Async/Direct (target <= 1.2), and how many sessions
# dropped the slow target (backlog_drops; 0: it was mirrored all along). SLOW=0 skips it.
set -euo pipefail
router=${1:?usage: $0 mirror|schemarouter}
: "${MAXSCALE_BIN:?set MAXSCALE_BIN}" "${MAXSCALE_LIBDIR:?set MAXSCALE_LIBDIR}"
ROUNDS=${ROUNDS:-3} SECS=${SECONDS_PER_RUN:-20} THREADS=${THREADS:-8}
TABLES=${TABLES:-4} TABLE_SIZE=${TABLE_SIZE:-10000} WORKLOAD=${WORKLOAD:-oltp_read_only}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/services/common.sh"
release=${CARGO_TARGET_DIR:-$root/target}/release
ours=$release/lib$router.so
nm -D "$ours" 2>/dev/null | grep mxs_get_module_object >/dev/null || { echo "$ours missing: run make with MAXSCALE_SRC"; exit 1; }
nm "$ours" | grep mxsrs_shim_module_object >/dev/null || { echo "$ours was built without the MaxScale shim"; exit 1; }
"$root/src/shim/check_install.sh" "$MAXSCALE_LIBDIR" "$(cat "$release/modules-maxscale-version")" "$MAXSCALE_BIN"

work=$(mktemp -d /tmp/bench-$router.XXXXXX)
cleanup() {
  local p
  for p in pid proxy.pid slowdb.pid; do kill "$(cat "$work/$p" 2>/dev/null)" 2>/dev/null || true; done
  for p in pid slowdb.pid; do
    for _ in $(seq 1 50); do kill -0 "$(cat "$work/$p" 2>/dev/null)" 2>/dev/null || break; sleep 0.2; done
  done
  rm -rf "$work"
}
trap cleanup EXIT
cp -rL "$MAXSCALE_LIBDIR" "$work/lib"
cp "$ours" "$work/lib/lib${router}_rs.so"
mkdir -p "$work"/{log,cache,data,run,persist}
admin=$((18000 + RANDOM % 1000)); native_port=$((admin + 1)); ours_port=$((admin + 2))
proxy_port=$((admin + 3)); async_port=$((admin + 4)); slow_native_port=$((admin + 5)); direct_port=$((admin + 6))
slow_port=$((admin + 7))
SLOW_DELAY_MS=${SLOW_DELAY_MS:-20} SLOW_UP_DELAY_MS=${SLOW_UP_DELAY_MS:-0} SLOW_RATE=${SLOW_RATE:-40}

# The slow target's server: a private MariaDB in $work, configured as the test services.
start_slow_server() {
  local d=$work/slowdb
  mariadb_cnf "$d" "$slow_port" root 9
  mariadb-install-db --defaults-file="$d/my.cnf" --auth-root-authentication-method=normal --skip-test-db >"$d/install.log" 2>&1 \
    || { cat "$d/install.log"; exit 1; }
  "${slow_sched[@]}" mariadbd --defaults-file="$d/my.cnf" >/dev/null 2>&1 &
  echo $! > "$work/slowdb.pid"
  wait_for 30 mariadb-admin -uroot -h127.0.0.1 -P"$slow_port" ping
  mariadb -uroot -h127.0.0.1 -P$slow_port -e "CREATE USER 'app'@'%' IDENTIFIED BY 'apppass'; GRANT ALL PRIVILEGES ON *.* TO 'app'@'%'" \
    || { tail "$d/log/error.log"; exit 1; }
}

servers="[s1]
type=server
address=127.0.0.1
port=3301

[s2]
type=server
address=127.0.0.1
port=3302

[Monitor]
type=monitor
module=mariadbmon
servers=s1,s2
user=app
password=apppass
monitor_interval=1s
"
case $router in
  mirror)
    params="targets=s1,s2
main=s1
exporter=file"
    native_extra="file=$work/native.jsonl"; ours_extra="file=$work/ours.jsonl"
    db=sbtest_mirror
    case ${SLOW_PRIORITY:-idle} in
      idle) slow_sched=(chrt --idle 0) ;;
      normal) slow_sched=() ;;
      *) echo "SLOW_PRIORITY: idle or normal"; exit 1 ;;
    esac
    start_slow_server
    "${slow_sched[@]}" python3 "$root/tests/bench/delay_proxy.py" $proxy_port $slow_port "$SLOW_DELAY_MS" "$SLOW_UP_DELAY_MS" &
    echo $! > "$work/proxy.pid"
    slow="
[s2slow]
type=server
address=127.0.0.1
port=$proxy_port

[MonitorSlow]
type=monitor
module=mariadbmon
servers=s2slow
user=app
password=apppass
monitor_interval=1s

[Async]
type=service
router=mirror_rs
user=app
password=apppass
targets=s1,s2slow
main=s1
exporter=file
file=$work/async.jsonl
sync=false

[NativeSlow]
type=service
router=mirror
user=app
password=apppass
targets=s1,s2slow
main=s1
exporter=file
file=$work/native-slow.jsonl

[Async-Listener]
type=listener
service=Async
protocol=mariadbprotocol
address=127.0.0.1
port=$async_port

[NativeSlow-Listener]
type=listener
service=NativeSlow
protocol=mariadbprotocol
address=127.0.0.1
port=$slow_native_port
" ;;
  schemarouter)
    # The sysbench tables live on one shard (s1); s2 holds other databases. Databases that
    # other test runs left on both servers are not this benchmark's business (PCRE2 look-ahead,
    # which both modules accept).
    params="targets=s1,s2
ignore_tables_regex=/^(?!sbtest_shard\\.|bench_other\\.)/"
    native_extra=""; ours_extra=""
    db=sbtest_shard ;;
  *) echo "unknown router $router"; exit 1 ;;
esac
cat > "$work/maxscale.cnf" <<CNF
[maxscale]
threads=2
admin_host=127.0.0.1
admin_port=$admin
admin_secure_gui=false

$servers
[Native]
type=service
router=$router
user=app
password=apppass
$params
$native_extra

[Ours]
type=service
router=${router}_rs
user=app
password=apppass
$params
$ours_extra

[Native-Listener]
type=listener
service=Native
protocol=mariadbprotocol
address=127.0.0.1
port=$native_port

[Ours-Listener]
type=listener
service=Ours
protocol=mariadbprotocol
address=127.0.0.1
port=$ours_port

# s1 alone, through a router that adds nothing: the schemarouter's ceiling, the mirror without s2.
[Direct]
type=service
router=readconnroute
user=app
password=apppass
servers=s1

[Direct-Listener]
type=listener
service=Direct
protocol=mariadbprotocol
address=127.0.0.1
port=$direct_port
${slow:-}
CNF
sbw() { local script=$1; shift; sysbench "$script" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=apppass \
  --mysql-db=$db --tables=$TABLES --table-size=$TABLE_SIZE "$@"; }
sb() { sbw oltp_read_only "$@"; }
case $WORKLOAD in
  oltp_read_only) script=oltp_read_only metric=queries unit=qps ;;
  short_sessions) script=$root/tests/bench/short_sessions.lua metric=transactions unit=sessions/s ;;
  *) echo "unknown WORKLOAD $WORKLOAD"; exit 1 ;;
esac
# Tables: created directly on the servers that should hold them, before MaxScale starts (a
# schemarouter caches its shard map: tables created later are unknown to it until it expires).
for port in 3301 $( [ $router = mirror ] && echo 3302 $slow_port ); do
  mariadb -h127.0.0.1 -P$port -uapp -papppass -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db"
  sb --mysql-port=$port prepare >/dev/null
done
if [ $router = schemarouter ]; then
  mariadb -h127.0.0.1 -P3302 -uapp -papppass -e "CREATE DATABASE IF NOT EXISTS bench_other; CREATE TABLE IF NOT EXISTS bench_other.t (id INT PRIMARY KEY)"
fi

"$MAXSCALE_BIN" --nodaemon --user=root --syslog=no --config="$work/maxscale.cnf" \
  --logdir="$work/log" --cachedir="$work/cache" --datadir="$work/data" --piddir="$work/run" \
  --persistdir="$work/persist" --libdir="$work/lib" >/dev/null 2>&1 &
echo $! > "$work/pid"
for _ in $(seq 1 100); do mariadb -h127.0.0.1 -P$ours_port -uapp -papppass -e 'select 1' >/dev/null 2>&1 && break; sleep 0.3; done
mariadb -h127.0.0.1 -P$ours_port -uapp -papppass -e 'select 1' >/dev/null || { tail -20 "$work/log/maxscale.log"; exit 1; }

# MaxScale's CPU time (user + system, clock ticks) so far: the services run one at a time, so
# its growth during a run is what that run cost MaxScale, whatever else loads the machine.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$work/pid")/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
run() { # run PORT [sysbench args] -> "rate p95 cpu" (cpu: MaxScale CPU µs per query or session)
  local port=$1; shift
  local t0; t0=$(cpu_ticks)
  local out; out=$(sbw "$script" --mysql-port=$port --threads=$THREADS --time=$SECS --report-interval=0 --db-ps-mode=${PS_MODE:-auto} "$@" run 2>&1) \
    || { echo "sysbench on port $port failed:" >&2; echo "$out" | tail -20 >&2; tail -20 "$work/log/maxscale.log" >&2; return 1; }
  local t1; t1=$(cpu_ticks)
  echo "$(echo "$out" | awk -v m="$metric:" '$1 == m {gsub(/\(/,"",$3); print $3}') $(echo "$out" | awk '/95th percentile:/ {print $3}')" \
    "$(echo "$out" | awk -v m="$metric:" -v d=$(( (t1 - t0) * tick_us )) '$1 == m {printf "%.1f", d / $2}')"
}
declare -a nq np nc oq op oc rq rp rc
echo "router=$router workload=$WORKLOAD rounds=$ROUNDS seconds=$SECS threads=$THREADS tables=$TABLES size=$TABLE_SIZE"
echo "load before: $(uptime)"
for r in $(seq 1 "$ROUNDS"); do
  read -r q p c < <(run $native_port); nq+=("$q"); np+=("$p"); nc+=("$c"); echo "round $r native: $unit=$q p95=${p}ms maxscale_cpu=${c}us"
  read -r q p c < <(run $ours_port); oq+=("$q"); op+=("$p"); oc+=("$c"); echo "round $r ours:   $unit=$q p95=${p}ms maxscale_cpu=${c}us"
  read -r q p c < <(run $direct_port); rq+=("$q"); rp+=("$p"); rc+=("$c"); echo "round $r readconnroute to s1: $unit=$q p95=${p}ms maxscale_cpu=${c}us"
done
echo "load after: $(uptime)"
# PROFILE=1: one more run of each service with perf sampling MaxScale's process (needs perf and
# the right to profile it): how MaxScale's CPU time splits between the kernel, MaxScale's core
# and the router module.
# Then MaxScale's system calls, context switches and page faults per query (or session):
# counts, not times, though how many events one wake-up finds still moves them with the load.
profile() { # profile PORT LABEL
  local data=$work/perf.$2 pid; pid=$(cat "$work/pid")
  perf record -q -F 499 -o "$data" -p "$pid" >/dev/null 2>&1 &
  local record_pid=$!
  perf stat -x, -e raw_syscalls:sys_enter,context-switches,page-faults -o "$data.stat" -p "$pid" >/dev/null 2>&1 &
  local stat_pid=$!
  local q; read -r q _ < <(run "$1")
  kill -INT $record_pid $stat_pid; wait $record_pid $stat_pid || true
  echo "MaxScale CPU by module, $2 (modules with >= 0.3%):"
  perf report -i "$data" --sort dso --stdio 2>/dev/null | awk '/^ +[0-9.]+%/ && $1+0 >= 0.3 {printf "  %7s %s\n", $1, $2}'
  awk -F, -v n="$q" -v secs="$SECS" -v per="${unit%/s}" '$1 ~ /^[0-9]+$/ {printf "  %s per %s: %.2f\n", $3, per == "qps" ? "query" : "session", $1 / (n * secs)}' "$data.stat"
}
if [ "${PROFILE:-0}" = 1 ]; then
  command -v perf >/dev/null || { echo "PROFILE=1 needs perf (apt install linux-perf)"; exit 1; }
  profile $native_port native; profile $ours_port ours; profile $direct_port readconnroute
fi
python3 - "${nq[*]}" "${np[*]}" "${oq[*]}" "${op[*]}" "$unit" "${nc[*]}" "${oc[*]}" "${rq[*]}" "${rp[*]}" "${rc[*]}" "$router" <<'PY'
import sys, statistics as st
nq, np_, oq, op = ([float(x) for x in a.split()] for a in sys.argv[1:5])
unit = sys.argv[5]
nc, oc = ([float(x) for x in a.split()] for a in sys.argv[6:8])
rq, rp, rc = ([float(x) for x in a.split()] for a in sys.argv[8:11])
router = sys.argv[11]
n, o = st.median(nq), st.median(oq)
per_round = sorted(b / a for a, b in zip(nq, oq))
per = "query" if unit == "qps" else "session"
print(f"native: {unit}={n:.1f} p95={st.median(np_):.2f}ms  MaxScale CPU per {per}: {st.median(nc):.1f}us")
print(f"ours:   {unit}={o:.1f} p95={st.median(op):.2f}ms  MaxScale CPU per {per}: {st.median(oc):.1f}us")
print(f"ratio ours/native {unit}: {o/n:.3f}   p95 native/ours: {st.median(np_)/max(st.median(op),1e-9):.3f}")
print(f"per-round ratios ours/native {unit}: median {st.median(per_round):.3f}, range {per_round[0]:.3f}-{per_round[-1]:.3f}")
print(f"MaxScale CPU per {per} native/ours: {st.median(nc)/max(st.median(oc),1e-9):.3f} (the router's cost, less sensitive to the machine's load)")
r = st.median(rq)
print(f"readconnroute to s1: {unit}={r:.1f} p95={st.median(rp):.2f}ms  MaxScale CPU per {per}: {st.median(rc):.1f}us")
if router == "schemarouter":
    per_round_ceiling = sorted(c / a for a, c in zip(nq, rq))
    # The sysbench tables are all on s1: a router that cost nothing and sent nothing to s2
    # would run as readconnroute does. No schemarouter can beat the native one by more.
    print(f"ceiling readconnroute/native {unit}: {r/n:.3f} (per round median {st.median(per_round_ceiling):.3f}, range {per_round_ceiling[0]:.3f}-{per_round_ceiling[-1]:.3f}): no router on s1 gains more over native here")
else:
    print(f"mirroring's cost: native/readconnroute {unit}: {n/r:.3f}, ours/readconnroute: {o/r:.3f}")
PY
if [ $router = mirror ] && [ "$WORKLOAD" = oltp_read_only ] && [ "${SLOW:-1}" != 0 ]; then
  echo "slow target: a MariaDB of the benchmark's own behind a proxy delaying its answers by ${SLOW_DELAY_MS} ms and what it is sent by ${SLOW_UP_DELAY_MS} ms, both at ${SLOW_PRIORITY:-idle} CPU priority; sysbench --rate=$SLOW_RATE"
  declare -a aq ap sq sp dq dp fq fp
  proxy_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$work/proxy.pid")/stat"; }
  proxy0=$(proxy_ticks); slow_start=$(date +%s)
  for r in $(seq 1 "$ROUNDS"); do
    read -r q p _ < <(run $direct_port --rate=$SLOW_RATE); dq+=("$q"); dp+=("$p"); echo "round $r readconnroute (s1 only): qps=$q p95=${p}ms"
    read -r q p _ < <(run $ours_port --rate=$SLOW_RATE); fq+=("$q"); fp+=("$p"); echo "round $r ours, s2 not slowed:     qps=$q p95=${p}ms"
    read -r q p _ < <(run $async_port --rate=$SLOW_RATE); aq+=("$q"); ap+=("$p"); echo "round $r ours sync=false:         qps=$q p95=${p}ms"
    read -r q p _ < <(run $slow_native_port --rate=$SLOW_RATE); sq+=("$q"); sp+=("$p"); echo "round $r native mirror:          qps=$q p95=${p}ms"
  done
  # The proxy shares the 2 cores with MaxScale, sysbench and the servers: what it took.
  echo "delay proxy CPU: $(( (($(proxy_ticks) - proxy0) * tick_us / 10000) / ($(date +%s) - slow_start) ))% of one core over the slow-target runs"
  drops=$(curl -s -u admin:mariadb "http://127.0.0.1:$admin/v1/services/Async" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]["attributes"]["router_diagnostics"]["targets"].get("s2slow", {}); print(d.get("backlog_drops", "?"), d.get("queries", "?"))')
  python3 - "${dq[*]}" "${dp[*]}" "${aq[*]}" "${ap[*]}" "${sq[*]}" "${sp[*]}" "$drops" "${fq[*]}" "${fp[*]}" <<'PY'
import sys, statistics as st
dq, dp, aq, ap, sq, sp = ([float(x) for x in a.split()] for a in sys.argv[1:7])
drops, queries = sys.argv[7].split()
fq, fp = ([float(x) for x in a.split()] for a in sys.argv[8:10])
m = st.median
print(f"readconnroute:    qps={m(dq):.1f} p95={m(dp):.2f}ms")
print(f"ours, s2 not slowed (sync=true): qps={m(fq):.1f} p95={m(fp):.2f}ms   (what mirroring itself costs here)")
print(f"ours sync=false:  qps={m(aq):.1f} p95={m(ap):.2f}ms   (slow target: {queries} queries mirrored, dropped by {drops} sessions)")
print(f"native mirror:    qps={m(sq):.1f} p95={m(sp):.2f}ms")
print(f"p95 ours sync=false / readconnroute: {m(ap)/max(m(dp),1e-9):.3f} (target <= 1.2)   native / readconnroute: {m(sp)/max(m(dp),1e-9):.3f}")
PY
fi
for port in 3301 3302; do mariadb -h127.0.0.1 -P$port -uapp -papppass -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true; done
