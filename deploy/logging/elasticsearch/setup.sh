#!/bin/sh
# Loads the Glimpse log retention setup into Elasticsearch (and the saved
# searches into Kibana). Idempotent: every call is a PUT of the full object.
#
#   ELASTICSEARCH_URL=http://localhost:9200 KIBANA_URL=http://localhost:5601 \
#   GLIMPSE_ARCHIVE_BUCKET=my-bucket sh deploy/logging/elasticsearch/setup.sh
#
# With GLIMPSE_ARCHIVE_BUCKET the archive repository is S3 (the repository-s3
# module ships with Elasticsearch 8; put the S3 credentials in the
# Elasticsearch keystore as s3.client.default.access_key / secret_key, never in
# this repository). Without it (local stack) it is a shared-filesystem
# repository under path.repo, so the SLM policies still load and run.
# The docker-compose stack runs this once in the `es-setup` container; the
# production stack in the Job elasticsearch-setup (deploy/production), which
# sets ELASTICSEARCH_USER / ELASTICSEARCH_PASSWORD from a Secret: they reach
# curl through a config file, never its command line.
set -eu

ES="${ELASTICSEARCH_URL:-http://elasticsearch:9200}"
KIBANA="${KIBANA_URL:-}"
DIR="$(cd "$(dirname "$0")" && pwd)"

AUTH=""
if [ -n "${ELASTICSEARCH_PASSWORD:-}" ]; then
    AUTH="$(mktemp)"
    chmod 600 "$AUTH"
    trap 'rm -f "$AUTH"' EXIT
    # curl config syntax: a quoted value with \ and \" escaped.
    esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
    printf 'user = "%s:%s"\n' "$(esc "${ELASTICSEARCH_USER:-elastic}")" "$(esc "$ELASTICSEARCH_PASSWORD")" >"$AUTH"
fi
# curl with the credentials, when given.
c() {
    if [ -n "$AUTH" ]; then curl -K "$AUTH" "$@"; else curl "$@"; fi
}

put() { # put PATH FILE
    printf 'PUT %s ... ' "$1"
    c -fsS -X PUT "$ES$1" -H 'content-type: application/json' --data-binary "@$2" >/dev/null
    echo ok
}

echo "waiting for $ES"
i=0
until c -fsS "$ES/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 60 ] || { echo "Elasticsearch not ready" >&2; exit 1; }
    sleep 5
done

if [ -n "${GLIMPSE_ARCHIVE_BUCKET:-}" ]; then
    tmp="$(mktemp)"
    sed "s|\${GLIMPSE_ARCHIVE_BUCKET}|$GLIMPSE_ARCHIVE_BUCKET|" "$DIR/snapshot-repository-s3.json" >"$tmp"
    put /_snapshot/glimpse-archive "$tmp"
    rm -f "$tmp"
else
    printf '{"type":"fs","settings":{"location":"glimpse-archive","compress":true}}' >/tmp/glimpse-fs-repo.json
    put /_snapshot/glimpse-archive /tmp/glimpse-fs-repo.json
fi

for f in "$DIR"/slm/*.json; do put "/_slm/policy/$(basename "$f" .json)" "$f"; done
for f in "$DIR"/ilm/*.json; do put "/_ilm/policy/$(basename "$f" .json)" "$f"; done
for f in "$DIR"/component-templates/*.json; do put "/_component_template/$(basename "$f" .json)" "$f"; done
for f in "$DIR"/index-templates/*.json; do put "/_index_template/$(basename "$f" .json)" "$f"; done

if [ -n "$KIBANA" ]; then
    echo "waiting for $KIBANA"
    i=0
    until c -fsS "$KIBANA/api/status" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt 60 ] || { echo "Kibana not ready" >&2; exit 1; }
        sleep 5
    done
    printf 'import Kibana saved searches ... '
    c -fsS -X POST "$KIBANA/api/saved_objects/_import?overwrite=true" -H 'kbn-xsrf: true' \
        --form file=@"$DIR/../kibana/saved-searches.ndjson" >/dev/null
    echo ok
fi
echo "setup done"
