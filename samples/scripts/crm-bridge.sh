#!/usr/bin/env bash
# crm-bridge.sh: each Tiledesk `lead.create` becomes a contact in a CRM's REST API.
#
# Run it as an exec sink of tdhook-receiver; the URL and the API token come from the
# environment, which the receiver passes on only when asked to:
#
#   export CRM_URL=https://crm.example.com/api/v1/contacts
#   export CRM_TOKEN="$(cat /etc/tdhook/crm-token)"
#   tdhook-receiver --secret-file /etc/tdhook/secret \
#     --sink 'exec:samples/scripts/crm-bridge.sh' --pass-env CRM_URL --pass-env CRM_TOKEN
#
# Input: event records on stdin, one JSON object per line (the receiver sends one per run).
# Records of other events are skipped. Exit status: 0 when every lead was accepted (HTTP 2xx),
# non-zero otherwise, so that the receiver retries later and dead-letters after --retry-max.
#
# Event data never reaches a command line: jq reads the record from stdin, curl reads the
# contact with --data-binary @- and its headers (the token among them) from a here-document.
set -euo pipefail

: "${CRM_URL:?crm-bridge: CRM_URL is not set (pass it with --pass-env CRM_URL)}"
: "${CRM_TOKEN:?crm-bridge: CRM_TOKEN is not set (pass it with --pass-env CRM_TOKEN)}"
command -v jq >/dev/null || { echo "crm-bridge: jq is not installed" >&2; exit 2; }
command -v curl >/dev/null || { echo "crm-bridge: curl is not installed" >&2; exit 2; }

response=$(mktemp)
headers=$(mktemp)
trap 'rm -f "$response" "$headers"' EXIT
chmod 600 "$headers"

# The CRM's contact: map the fields your CRM expects here.
to_contact='{
  external_id: .payload._id,
  name: (.payload.fullname // .payload.attributes.userFullname // ""),
  email: (.payload.email // .payload.attributes.userEmail // null),
  phone: (.payload.phone // null),
  source: "tiledesk",
  tiledesk_project_id: .project_id,
  created_at: (.payload.createdAt // null)
}'

post_contact() {
  local contact=$1 lead_id=$2 code
  # printf is a shell builtin: the token stays out of every process's argv.
  printf 'Authorization: Bearer %s\nContent-Type: application/json\nIdempotency-Key: %s\n' \
    "$CRM_TOKEN" "${TDHOOK_DELIVERY_ID:-$lead_id}" > "$headers"
  if ! code=$(curl --silent --show-error --max-time "${CRM_TIMEOUT:-20}" --request POST \
      --header "@$headers" --data-binary @- --output "$response" --write-out '%{http_code}' \
      "$CRM_URL" <<<"$contact"); then
    echo "crm-bridge: cannot reach the CRM for lead $lead_id" >&2
    return 1
  fi
  if [[ ! $code =~ ^2[0-9][0-9]$ ]]; then
    echo "crm-bridge: the CRM answered HTTP $code for lead $lead_id: $(head -c 300 "$response")" >&2
    return 1
  fi
  echo "crm-bridge: lead $lead_id sent to the CRM (HTTP $code)"
}

while IFS= read -r record || [[ -n $record ]]; do
  [[ -n $record ]] || continue
  event=$(jq -r '.event // empty' <<<"$record")
  [[ $event == lead.create ]] || continue
  contact=$(jq -c "$to_contact" <<<"$record")
  lead_id=$(jq -r '.payload._id // "unknown"' <<<"$record")
  post_contact "$contact" "$lead_id"
done
