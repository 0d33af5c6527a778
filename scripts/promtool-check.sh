#!/usr/bin/env bash
# promtool over the monitoring configuration, and over real scrapes.
#
#   scripts/promtool-check.sh               config, rules, rule unit tests, then `promtool check
#                                           metrics` over the scrapes of a real stack (the API,
#                                           worker pools and exporter that
#                                           tests/integration/test_metrics.py starts)
#   scripts/promtool-check.sh URL [URL...]  the same, then over these /metrics URLs instead
#
# Installs promtool from Debian's `prometheus` package when it is missing (and stops the
# Prometheus server the package starts, which would take port 9090 from the simulator).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if ! command -v promtool >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
        $SUDO systemctl disable --now prometheus
    fi
fi
promtool --version | head -1

promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.yml

if [ "$#" -gt 0 ]; then
    for url in "$@"; do
        echo "promtool check metrics: $url"
        "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$url" \
            | promtool check metrics
    done
else
    # Every scrape these tests take goes through `promtool check metrics` (promtool is installed
    # now, so they do not skip it); the deploy tests also parse the dashboard's queries.
    "$PY" -m pytest -q -p no:cacheprovider tests/unit/test_deploy.py tests/integration/test_metrics.py
fi
echo "promtool checks passed"
