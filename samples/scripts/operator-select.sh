#!/usr/bin/env bash
# operator-select.sh: answers Tiledesk's synchronous `operator.select` hook (reference §4.3).
#
# Run it as a reply command of tdhook-receiver; Tiledesk waits for the answer while it creates
# the conversation:
#
#   tdhook-receiver --secret-file /etc/tdhook/secret \
#     --reply 'operator.select=samples/scripts/operator-select.sh' --reply-timeout 3s
#   # to always route to one agent (a Tiledesk user id):
#   TDHOOK_OPERATOR_ID=655b7ed3b7e1c3d9503a10f3 tdhook-receiver ... --pass-env TDHOOK_OPERATOR_ID
#
# Input: the event record on stdin. Output: the routing result Tiledesk sent (the record's
# `payload`) echoed back with only `operators` changed, because Tiledesk replaces its whole
# routing result with the answer and dereferences `department` and `agents` without checks.
#
# Choice of the agent, first that applies:
#   1. TDHOOK_OPERATOR_ID, if set;
#   2. the first of `available_agents` (id_user is a string, or an object with _id);
#   3. nobody available: operators stays as Tiledesk chose (usually [] = pooled).
# Any failure (no jq, invalid input) exits non-zero: the receiver then answers {} and Tiledesk
# keeps its own choice.
set -euo pipefail

command -v jq >/dev/null || { echo "operator-select: jq is not installed" >&2; exit 2; }

jq -c --arg forced "${TDHOOK_OPERATOR_ID:-}" '
  .payload
  | ( if $forced != "" then $forced
      else ((.available_agents // [])[0].id_user // null)
           | if type == "object" then ._id else . end
      end ) as $agent
  | if $agent == null then . else .operators = [{id_user: $agent}] end
'
