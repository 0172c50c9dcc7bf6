#!/bin/sh
# Installs the component template, the ILM policy and the index template by
# hand, in that order, for pipelines that run with manage_template = false
# (ELASTIC_MANAGE_TEMPLATE=false), e.g. when the pipeline's Elasticsearch user
# may write documents but not templates. The files are exactly what the sink
# installs itself with manage_template = true (`rum-pipeline templates`).
# opensearch/ holds OpenSearch 2.7+'s (flat_object, no ILM policy).
#
#   ELASTIC_CLUSTER=https://elastic:9200 ELASTIC_HTTP_AUTH=elastic:changeme \
#     deployments/elasticsearch/install.sh [bulk|data-stream|opensearch/bulk|opensearch/data-stream]
set -eu
variant=${1:-bulk}
dir=$(dirname "$0")/$variant
[ -d "$dir/_index_template" ] || { echo "usage: $0 [bulk|data-stream|opensearch/bulk|opensearch/data-stream]" >&2; exit 2; }
cluster=${ELASTIC_CLUSTER:?set ELASTIC_CLUSTER to the Elasticsearch URL}
cluster=${cluster%%,*}
cluster=${cluster%/}
# Elasticsearch's answer is printed whatever its status (curl -f would hide
# why a PUT was refused); a status other than 2xx stops the script.
answer=$(mktemp)
trap 'rm -f "$answer"' EXIT
for kind in _component_template _ilm/policy _index_template; do
  for file in "$dir/$kind"/*.json; do
    [ -e "$file" ] || continue
    name=$(basename "$file" .json)
    printf 'PUT %s/%s: ' "$kind" "$name"
    status=$(curl -sS -o "$answer" -w '%{http_code}' -X PUT ${ELASTIC_HTTP_AUTH:+-u "$ELASTIC_HTTP_AUTH"} \
      -H 'Content-Type: application/json' --data-binary "@$file" \
      "$cluster/$kind/$name")
    cat "$answer"
    echo
    case $status in
      2??) ;;
      *) echo "install.sh: PUT $kind/$name answered $status" >&2; exit 1 ;;
    esac
  done
done
