#!/usr/bin/env bash
# Installs the tools the ops checks (.ci/ops-check.sh) and the end-to-end test
# (.ci/e2e.sh) need, from Debian's packages. Idempotent: a tool already present
# is not installed again. Run as root on a Debian machine (CI runs as root).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# prometheus: promtool + the prometheus server for e2e.
have_cmd promtool && have_cmd prometheus || need+=(prometheus)
# prometheus-alertmanager: amtool.
have_cmd amtool || need+=(prometheus-alertmanager)
# docker-compose (v1, Python): `docker-compose config` parses and validates the
# compose file against the compose-spec JSON schema it ships, without an engine.
have_cmd docker-compose || need+=(docker-compose)
have_cmd curl || need+=(curl)
# Debian's own python3 with yaml + jsonschema for the asset checks.
[ -x /usr/bin/python3 ] || need+=(python3)
have_pkg python3-yaml || need+=(python3-yaml)
have_pkg python3-jsonschema || need+=(python3-jsonschema)

if [ "${#need[@]}" -eq 0 ]; then
    echo "install-tools: all tools present"
    exit 0
fi

echo "install-tools: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# The prometheus packages try to start their services from postinst; with no
# init system that is skipped or fails harmlessly. policy-rc.d forbids it.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
for attempt in 1 2 3; do
    if $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends \
           -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
           "${need[@]}"; then
        break
    fi
    if [ "$attempt" -eq 3 ]; then
        echo "install-tools: apt-get failed" >&2
        exit 1
    fi
    sleep 5
done
# Debian's prometheus service (if something started it anyway) would hold :9090
# which the e2e test needs; nothing here starts it, but be explicit.
for t in promtool prometheus amtool docker-compose curl; do
    have_cmd "$t" || { echo "install-tools: $t missing after install" >&2; exit 1; }
done
echo "install-tools: done"
