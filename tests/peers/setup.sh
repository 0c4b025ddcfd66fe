#!/usr/bin/env bash
# Installs the Python OpenTelemetry peer used by tests/trace_python_peer.rs into
# tests/peers/.venv (idempotent; a second run only checks the pins).
# Usage: bash tests/peers/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" -c 'import grpc, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc, prometheus_client.openmetrics.parser; print("python peer ready:", opentelemetry.sdk.__name__, "grpcio", grpc.__version__)'
