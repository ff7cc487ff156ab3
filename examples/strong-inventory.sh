#!/usr/bin/env bash
# Reserving the last unit of stock with the strong path.
#
# Two agents race for the one unit left of a SKU. Each reads the stock and
# tries to take a unit with a compare-and-swap on the value it read; the
# strong path is linearizable, so exactly one CAS wins and the other is
# refused (exit 3) with the reason. Then the same reservation done as one
# transaction that also records the order, atomically.
#
# Needs a running cluster: deploy/local-cluster up
# Usage: examples/strong-inventory.sh [SKU]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The local cluster's endpoints and admin credential (deploy/local-cluster env), unless set already.
if [ -z "${STIG_ENDPOINTS:-}" ] && [ -f "${STIG_CLUSTER_DIR:-$ROOT/cluster-data}/env" ]; then
  . "${STIG_CLUSTER_DIR:-$ROOT/cluster-data}/env"
fi
STIG=${STIG:-$ROOT/build/bin/stig}
export STIG_ENDPOINTS=${STIG_ENDPOINTS:-127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103}
SKU=${1:-sku-$(date +%s)-$RANDOM}
STOCK="stock:$SKU"

[ -x "$STIG" ] || { echo "error: $STIG not found; build first (see README)" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

step "one unit of $SKU in stock (created only if missing: --expect-version 0)"
"$STIG" --agent warehouse strong put "$STOCK" 1 --expect-version 0
"$STIG" --json strong get "$STOCK"

step "two agents race to take it with CAS 1 -> 0"
take() {  # agent
  if "$STIG" --agent "$1" strong cas "$STOCK" 1 0 2>"/tmp/$1.$$.err"; then
    echo "$1: got the last unit"
  else
    echo "$1: refused (exit $?): $(cat "/tmp/$1.$$.err")"
  fi
  rm -f "/tmp/$1.$$.err"
}
take checkout-agent-a & take checkout-agent-b & wait
"$STIG" strong get "$STOCK"

step "restock and reserve with a transaction: stock 1 -> 0 and the order, or nothing"
"$STIG" --agent warehouse strong put "$STOCK" 1
ORDER="order:$SKU:$RANDOM"
reserve() {
  cat <<JSON
{"compare":[{"key":"$STOCK","value":"1"},{"key":"$ORDER","exists":false}],
 "success":[{"put":{"key":"$STOCK","value":"0"}},{"put":{"key":"$ORDER","value":"reserved"}}],
 "failure":[{"get":{"key":"$STOCK"}}]}
JSON
}
reserve | "$STIG" --agent checkout-agent-a strong txn
reserve | "$STIG" --agent checkout-agent-b strong txn   # compares fail: the failure branch shows the stock

step "who changed the stock, and when"
"$STIG" strong history "$STOCK"
