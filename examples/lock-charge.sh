#!/usr/bin/env bash
# Charging a card under a lock, with a fencing token.
#
# Two workers want to charge the same order. `stig lock` runs each one's
# charge step while holding the order's lock (the second waits for the
# first), and hands the step a fencing token. The step records the charge
# with a write fenced by that token, so a worker that lost the lock (paused
# past its session's TTL, say) could not overwrite the next holder's record:
# its stale token is refused. The second worker sees the order is charged
# already and does nothing.
#
# Needs a running cluster: deploy/local-cluster up
# Usage: examples/lock-charge.sh [ORDER]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The local cluster's endpoints and admin credential (deploy/local-cluster env), unless set already.
if [ -z "${STIG_ENDPOINTS:-}" ] && [ -f "${STIG_CLUSTER_DIR:-$ROOT/cluster-data}/env" ]; then
  . "${STIG_CLUSTER_DIR:-$ROOT/cluster-data}/env"
fi
STIG=${STIG:-$ROOT/build/bin/stig}
export STIG_ENDPOINTS=${STIG_ENDPOINTS:-127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103}
ORDER=${1:-order-$(date +%s)-$RANDOM}
export STIG ORDER

[ -x "$STIG" ] || { echo "error: $STIG not found; build first (see README)" >&2; exit 1; }

# The charge step, run under the lock: idempotent thanks to the check, and
# fenced so that only the current lock holder can record the charge.
charge_step='
  if "$STIG" --json strong get "$ORDER:charged" | grep -q "\"value\":\"yes\""; then
    echo "$STIG_AGENT: $ORDER already charged; nothing to do"
    exit 0
  fi
  echo "$STIG_AGENT: charging $ORDER with token $STIG_FENCE_TOKEN"
  sleep 1   # the payment provider call
  "$STIG" strong put "$ORDER:charged" yes --fence "$STIG_LOCK_NAME:$STIG_FENCE_TOKEN"
'
for worker in worker-a worker-b; do
  STIG_AGENT=$worker "$STIG" lock "charge:$ORDER" --ttl 5s --wait 30s -- sh -c "$charge_step" &
done
wait

echo
echo "== a stale token is refused (the lock was released, so nobody holds it now):"
"$STIG" strong put "$ORDER:charged" twice --fence "charge:$ORDER:1" || echo "(exit $?)"
"$STIG" strong history "$ORDER:charged"
