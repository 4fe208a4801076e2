#!/bin/bash
# Starts the test services on 127.0.0.1 (idempotent). Usage: up.sh [mariadb] [pg] [etcd] [kafka]
#   MariaDB 10.11 on 3301 (binlog: ROW, FULL image, FULL metadata), 3302, 3303
#     users: app/apppass (ALL PRIVILEGES), repl/replpass (replication + SELECT)
#   PostgreSQL 15 on 5433 (wal_level=logical): repl/replpass (LOGIN REPLICATION, owns testdb)
#   etcd 3.4 on 2379; Kafka-protocol broker (tansu, in memory) on 9092
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/common.sh"
what=${*:-mariadb pg etcd kafka}

mariadb_up() {
  local i=0
  for port in $MARIADB_PORTS; do
    i=$((i+1)); local d=$SERVICES_DIR/mariadb/$port
    local extra=""
    [ $i = 1 ] && extra="log_bin=$d/log/binlog
binlog_format=ROW
binlog_row_image=FULL
binlog_row_metadata=FULL"
    mariadb_cnf "$d" "$port" mysql "$i" "$extra"
    chown -R mysql:mysql "$d"
    if [ ! -d "$d/data/mysql" ]; then
      mariadb-install-db --defaults-file="$d/my.cnf" --auth-root-authentication-method=normal \
        --skip-test-db >"$d/log/install.log" 2>&1 || { cat "$d/log/install.log"; exit 1; }
    fi
    if ! mariadb-admin -uroot -h127.0.0.1 -P"$port" ping >/dev/null 2>&1; then
      setsid nohup mariadbd --defaults-file="$d/my.cnf" >>"$d/log/stdout.log" 2>&1 </dev/null &
      wait_for 60 mariadb-admin -uroot -h127.0.0.1 -P"$port" ping || { tail "$d/log/error.log"; exit 1; }
    fi
    mariadb -uroot -h127.0.0.1 -P"$port" <<SQL
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'apppass';
GRANT ALL PRIVILEGES ON *.* TO 'app'@'%' WITH GRANT OPTION;
-- The fuzzer's mis-framed packets can start with COM_SHUTDOWN's byte: they must not stop a
-- server everyone's tests share (one did, through a router, at 14:20 on 2026-12-01).
REVOKE SHUTDOWN ON *.* FROM 'app'@'%';
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'replpass';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR, REPLICATION MASTER ADMIN,
      SLAVE MONITOR, SELECT, RELOAD, SHOW DATABASES, LOCK TABLES ON *.* TO 'repl'@'%';
SQL
    echo "mariadb: 127.0.0.1:$port up"
  done
}

pg_up() {
  local b=$SERVICES_DIR/pg bin=/usr/lib/postgresql/15/bin
  mkdir -p "$b/run" "$b/log"; chown postgres:postgres "$b" "$b/run" "$b/log"
  if [ ! -f "$b/data/PG_VERSION" ]; then
    runuser -u postgres -- $bin/initdb -D "$b/data" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$b/log/initdb.log" 2>&1
    cat >>"$b/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$b/run'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 200
fsync = off
full_page_writes = off
CONF
    cat >"$b/data/pg_hba.conf" <<HBA
local all all trust
local replication all trust
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
HBA
  fi
  runuser -u postgres -- $bin/pg_ctl -D "$b/data" status >/dev/null 2>&1 ||
    runuser -u postgres -- $bin/pg_ctl -D "$b/data" -l "$b/log/postgres.log" -w -t 60 start >/dev/null
  runuser -u postgres -- $bin/psql -h "$b/run" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q <<SQL
ALTER ROLE postgres PASSWORD 'postgres';
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='repl') THEN
    CREATE ROLE repl WITH LOGIN REPLICATION PASSWORD 'replpass';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE testdb OWNER repl' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname='testdb') \gexec
SQL
  echo "postgres: 127.0.0.1:$PG_PORT up"
}

etcd_up() {
  local b=$SERVICES_DIR/etcd
  mkdir -p "$b/data" "$b/log"; chmod 700 "$b/data"
  if ! ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$ETCD_PORT endpoint health >/dev/null 2>&1; then
    setsid nohup etcd --name n1 --data-dir "$b/data" \
      --listen-client-urls http://127.0.0.1:$ETCD_PORT --advertise-client-urls http://127.0.0.1:$ETCD_PORT \
      --listen-peer-urls http://127.0.0.1:$((ETCD_PORT+1)) \
      --initial-advertise-peer-urls http://127.0.0.1:$((ETCD_PORT+1)) \
      --initial-cluster n1=http://127.0.0.1:$((ETCD_PORT+1)) --initial-cluster-state new \
      --listen-metrics-urls http://127.0.0.1:$((ETCD_PORT+2)) \
      --quota-backend-bytes 4294967296 --auto-compaction-mode=periodic --auto-compaction-retention=10m \
      --logger zap --log-outputs "$b/log/etcd.log" \
      >"$b/log/stdout.log" 2>&1 </dev/null &
    echo $! >"$b/etcd.pid"
    wait_for 30 env ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$ETCD_PORT endpoint health ||
      { tail "$b/log/etcd.log"; exit 1; }
  fi
  echo "etcd: 127.0.0.1:$ETCD_PORT up"
}

kafka_up() {
  local b=$SERVICES_DIR/kafka; mkdir -p "$b"
  if ! (exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT) 2>/dev/null; then
    setsid nohup "$(tansu_bin)" broker --listener-url tcp://127.0.0.1:$KAFKA_PORT \
      --advertised-listener-url tcp://127.0.0.1:$KAFKA_PORT --storage-engine memory://tansu/ \
      >"$b/tansu.log" 2>&1 </dev/null &
    echo $! >"$b/tansu.pid"
    wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT" || { tail "$b/tansu.log"; exit 1; }
  fi
  echo "kafka (tansu): 127.0.0.1:$KAFKA_PORT up"
}

for w in $what; do "${w}_up"; done
