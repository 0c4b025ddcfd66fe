#!/usr/bin/env bash
# Installs the tools the ops checks (.ci/ops-check.sh) and the end-to-end test
# (.ci/e2e.sh) need, from Debian's packages, and kubernetes-validate from PyPI
# into .ci/k8s/.venv (version pinned in .ci/k8s/requirements.txt). Idempotent:
# a tool already present is not installed again. Run as root on a Debian
# machine (CI runs as root).
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

have_pkg python3-venv || need+=(python3-venv)

# kubernetes-validate (PyPI, pinned in .ci/k8s/requirements.txt; offline
# Kubernetes schemas) for the manifests of deploy/production, in its own venv.
k8s_validate() {
    local here venv
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/k8s"
    venv="$here/.venv"
    if [ -x "$venv/bin/kubernetes-validate" ]; then
        local frozen
        frozen="$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null || true)"
        if grep -qxF -f "$here/requirements.txt" <<<"$frozen"; then return 0; fi
    fi
    echo "install-tools: kubernetes-validate into $venv"
    [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    "$venv/bin/kubernetes-validate" --version >/dev/null
}

if [ "${#need[@]}" -eq 0 ]; then
    k8s_validate
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
k8s_validate
echo "install-tools: done"
