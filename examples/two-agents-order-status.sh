#!/usr/bin/env bash
# Two agents share an order's status through Stigmergy, using only the CLI.
#
# A fulfilment agent (talking to node n1) and a support agent (talking to node
# n2) both work on the same order. Each reads the order, then both write a new
# status based on what they read, at the same time: neither write is lost.
# The store keeps both as siblings, each with the agent that wrote it and when,
# and one write carrying the context of a read that saw both resolves them.
# Then the same happens across a real network partition (stig admin partition).
#
# Needs a running cluster: deploy/local-cluster up (its nodes run with
# --enable-admin, which stig admin partition needs)
# Usage: examples/two-agents-order-status.sh [ORDER_KEY]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The local cluster's endpoints and admin credential (deploy/local-cluster env), unless set already.
if [ -z "${STIG_ENDPOINTS:-}" ] && [ -f "${STIG_CLUSTER_DIR:-$ROOT/cluster-data}/env" ]; then
  . "${STIG_CLUSTER_DIR:-$ROOT/cluster-data}/env"
fi
STIG=${STIG:-$ROOT/build/bin/stig}
ENDPOINTS=${STIG_ENDPOINTS:-127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103}
ORDER=${1:-order-$(date +%s)-$RANDOM}

[ -x "$STIG" ] || { echo "error: $STIG not found; run deploy/local-cluster up first" >&2; exit 1; }
IFS=, read -r -a EPS <<<"$ENDPOINTS"
((${#EPS[@]} >= 2)) || { echo "error: need at least two endpoints in STIG_ENDPOINTS" >&2; exit 1; }

# Each agent prefers its own node and fails over to the others.
rest_after() { local skip=$1 out="" e; for e in "${EPS[@]}"; do [ "$e" = "$skip" ] || out+=",$e"; done; echo "$out"; }
fulfilment() { "$STIG" --agent fulfilment-agent --endpoints "${EPS[0]}$(rest_after "${EPS[0]}")" "$@"; }
support() { "$STIG" --agent support-agent --endpoints "${EPS[1]}$(rest_after "${EPS[1]}")" "$@"; }
context_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["context"])'; }
step() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }

step "1. The fulfilment agent records a new order"
fulfilment put "$ORDER" "received"

step "2. The support agent reads it (through another node)"
support get "$ORDER"

step "3. Both agents read the current status and its causal context"
CTX_F=$(fulfilment --json get "$ORDER" | context_of)
CTX_S=$(support --json get "$ORDER" | context_of)
echo "fulfilment-agent holds context $CTX_F"
echo "support-agent    holds context $CTX_S"

step "4. At the same time: fulfilment ships it, support records a cancellation request"
fulfilment put "$ORDER" "shipped (tracking 1Z999)" --context "$CTX_F" &
support put "$ORDER" "cancellation requested by customer" --context "$CTX_S" &
wait

step "5. Neither write was lost: the order has two siblings, each saying who wrote it"
sleep 0.3  # let the nodes exchange the two writes (normally milliseconds)
support get "$ORDER"
support --json get "$ORDER"

step "6. The support agent decides, writing with the context of the read that saw both"
CTX_BOTH=$(support --json get "$ORDER" | context_of)
support put "$ORDER" "shipped; cancellation refused, return label sent" --context "$CTX_BOTH"

step "7. Everyone now sees one status"
sleep 0.3
fulfilment get "$ORDER"

step "8. A network partition: ${EPS[0]}'s node is cut off, and both sides keep accepting writes"
OTHERS=$(fulfilment --json cluster status | python3 -c '
import json, sys
print(",".join(n["id"] for n in json.load(sys.stdin)["nodes"] if n["state"] != "self"))')
trap 'fulfilment admin heal >/dev/null 2>&1 || true' EXIT  # never leave the cluster partitioned
fulfilment admin partition --drop "$OTHERS"
CTX_F=$(fulfilment --json get "$ORDER" | context_of)
CTX_S=$(support --json get "$ORDER" | context_of)
fulfilment put "$ORDER" "delivered (signed by J. Doe)" --context "$CTX_F"
support put "$ORDER" "refund issued" --context "$CTX_S"
echo "-- during the partition, the support side sees only its own write:"
support get "$ORDER"

step "9. Heal: the nodes exchange what they missed and converge; both writes survive as siblings"
fulfilment admin heal
for _ in $(seq 50); do
  digests=$(fulfilment --json cluster status | python3 -c '
import json, sys
print(len({n["digest"] for n in json.load(sys.stdin)["nodes"]}))')
  [ "$digests" = 1 ] && break
  sleep 0.2
done
fulfilment cluster status
support get "$ORDER"
CTX_BOTH=$(support --json get "$ORDER" | context_of)
support put "$ORDER" "delivered; refund issued as goodwill" --context "$CTX_BOTH"

step "10. Values that merge instead of conflicting: a counter and a set"
fulfilment counter add "$ORDER:parcels" 2
support counter add "$ORDER:parcels" 1
fulfilment set add "$ORDER:tags" fragile
support set add "$ORDER:tags" return-label
sleep 0.3
fulfilment counter get "$ORDER:parcels"
support set get "$ORDER:tags"
