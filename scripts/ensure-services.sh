#!/usr/bin/env bash
# Make sure Redis and PostgreSQL answer on 127.0.0.1 (6379, 5432): start them when installed but
# stopped, install them from Debian's packages when missing. Used by .ci/run and `make test`.
# `chromium`: Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; its
# own browser download does not work offline). `smsc`: the independent SMPP server of the SMPP
# tests (Debian's nodejs and npm, then `npm ci` in tests/smsc). `sentinel`: Debian's
# redis-sentinel, for the failover test and `make chaos` (they start their own Sentinels on free
# loopback ports; the package's own service is not used). `zsh`: for the test of the CLI's zsh
# completion script. `pgbouncer`: Debian's pgbouncer in transaction mode on 127.0.0.1:6432 in
# front of the PostgreSQL on 5432 (every database, trust auth for `postgres`), its config, pid
# and log in $SMSD_PGBOUNCER_DIR (default /tmp/smsdispatch-pgbouncer), for the PostgreSQL
# tests' PgBouncer pass and `make bench ARGS=--pgbouncer` (the package's own service is not used).
# Usage: scripts/ensure-services.sh [redis] [postgres] [chromium] [smsc] [sentinel] [zsh] [pgbouncer]
#        (default: redis postgres)
set -euo pipefail
want=("$@"); [[ ${#want[@]} -eq 0 ]] && want=(redis postgres)
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
apt_updated=0
apt_install() {
  if [[ $apt_updated -eq 0 ]]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done; return 1; }

ensure_redis() {
  port_open 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 || { echo "redis did not start" >&2; return 1; }
}

ensure_postgres() {
  if ! port_open 5432; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      apt_install postgresql
    fi
    ver=$(ls /etc/postgresql | sort -V | tail -1)
    # Trust auth on loopback, as on this machine kind; only for a cluster we set up here.
    hba="/etc/postgresql/$ver/main/pg_hba.conf"
    if ! grep -q "smsdispatch-ci" "$hba" 2>/dev/null; then
      sed -i '1i host all all 127.0.0.1/32 trust # smsdispatch-ci\nhost all all ::1/128 trust # smsdispatch-ci\nlocal all all trust # smsdispatch-ci' "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    wait_port 5432 || { echo "postgresql did not start" >&2; return 1; }
  fi
  for _ in $(seq 1 50); do
    psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1" >/dev/null 2>&1 && break
    sleep 0.2
  done
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" \
    | grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -qc "create database test"
}

ensure_chromium() {
  [[ -x /usr/bin/chromium ]] || apt_install chromium
}

# Install packages without starting their services (policy-rc.d 101): we start our own
# instances, on our own ports and files.
apt_install_stopped() {
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy"
    created=1
  fi
  apt_install "$@" || { [[ $created -eq 1 ]] && $SUDO rm -f "$policy"; return 1; }
  [[ $created -eq 1 ]] && $SUDO rm -f "$policy"
  return 0
}

ensure_sentinel() {
  command -v redis-sentinel >/dev/null && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  # Nothing listens on 26379 afterwards; the tests start Sentinels of their own.
  apt_install_stopped redis-sentinel
  command -v redis-sentinel >/dev/null
}

ensure_pgbouncer() {
  port_open 6432 && return 0
  port_open 5432 || ensure_postgres
  command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || apt_install_stopped pgbouncer
  local bin dir=${SMSD_PGBOUNCER_DIR:-/tmp/smsdispatch-pgbouncer} as_user=()
  bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  mkdir -p "$dir"
  # Transaction mode, as production runs it; `options` is not ignored, so a client that sends
  # it is refused as it would be there. Pool sizes: many test databases at once, each small.
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = postgres
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 20
max_db_connections = 40
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  echo '"postgres" ""' >"$dir/userlist.txt"
  # PgBouncer refuses to run as root: as root (CI) it runs as the postgres user.
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres "$dir"; as_user=(-u postgres); fi
  "$bin" -d "${as_user[@]}" "$dir/pgbouncer.ini"
  wait_port 6432 || { echo "pgbouncer did not start (log: $dir/pgbouncer.log)" >&2; return 1; }
}

ensure_zsh() {
  command -v zsh >/dev/null || apt_install zsh
}

ensure_smsc() {
  "$(dirname "$0")/../tests/smsc/install.sh"
}

for s in "${want[@]}"; do "ensure_$s"; done
