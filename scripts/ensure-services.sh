#!/usr/bin/env bash
# Make sure Redis and PostgreSQL answer on 127.0.0.1 (6379, 5432): start them when installed but
# stopped, install them from Debian's packages when missing. Used by .ci/run and `make test`.
# `chromium`: Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; its
# own browser download does not work offline). `smsc`: the independent SMPP server of the SMPP
# tests (Debian's nodejs and npm, then `npm ci` in tests/smsc). `sentinel`: Debian's
# redis-sentinel, for the failover test and `make chaos` (they start their own Sentinels on free
# loopback ports; the package's own service is not used). `zsh`: for the test of the CLI's zsh
# completion script.
# Usage: scripts/ensure-services.sh [redis] [postgres] [chromium] [smsc] [sentinel] [zsh]
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

ensure_sentinel() {
  command -v redis-sentinel >/dev/null && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  # policy-rc.d 101: the package's own Sentinel service is not started (nothing listens on
  # 26379 afterwards); the tests start Sentinels of their own.
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy"
    created=1
  fi
  apt_install redis-sentinel || { [[ $created -eq 1 ]] && $SUDO rm -f "$policy"; return 1; }
  [[ $created -eq 1 ]] && $SUDO rm -f "$policy"
  command -v redis-sentinel >/dev/null
}

ensure_zsh() {
  command -v zsh >/dev/null || apt_install zsh
}

ensure_smsc() {
  "$(dirname "$0")/../tests/smsc/install.sh"
}

for s in "${want[@]}"; do "ensure_$s"; done
