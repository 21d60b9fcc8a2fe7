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
