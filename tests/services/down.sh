#!/bin/bash
# Stops what up.sh started. Usage: down.sh [mariadb] [pg] [etcd] [kafka]
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/common.sh"
what=${*:-kafka etcd pg mariadb}
stop_pidfile() { [ -f "$1" ] || return 0; local p; p=$(cat "$1"); kill -TERM "$p" 2>/dev/null
  for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; rm -f "$1"; }
for w in $what; do case $w in
  mariadb) for port in $MARIADB_PORTS; do stop_pidfile "$SERVICES_DIR/mariadb/$port/run/mysqld.pid"; done ;;
  pg) runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$SERVICES_DIR/pg/data" -m fast stop >/dev/null 2>&1 ;;
  etcd) stop_pidfile "$SERVICES_DIR/etcd/etcd.pid" ;;
  kafka) stop_pidfile "$SERVICES_DIR/kafka/tansu.pid" ;;
esac; echo "$w: down"; done
