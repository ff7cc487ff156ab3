#!/usr/bin/env bash
# Access rules: bob may write orders/ and nothing else.
#
# On a local TLS cluster started with access control (the admin credential is
# the one `deploy/local-cluster env` exports), the admin
# issues bob a credential and grants him write on the orders/ prefix; bob's
# write to stock/1 is refused (exit 5, one line naming the agent, the key and
# the missing permission) and nothing is written; his write to orders/1 works
# and is recorded as his; he cannot change the rules.
#
# Needs a cluster with access control: deploy/local-cluster up --access-control
# Usage: examples/access-control.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${STIG_CLUSTER_DIR:-$ROOT/cluster-data}
STIG=${STIG:-$ROOT/build/bin/stig}
[ -x "$STIG" ] || { echo "error: $STIG not found; run deploy/local-cluster up first" >&2; exit 1; }
[ -f "$DATA/env" ] || { echo "error: no local cluster in $DATA; run deploy/local-cluster up first" >&2; exit 1; }
. "$DATA/env"  # endpoints and the admin credential
grep -q STIG_CERT "$DATA/env" || { echo "error: the local cluster runs without TLS (--insecure): no access rules" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }
key=orders/$(date +%s)-$RANDOM

step "the admin issues bob a credential and grants him write on orders/"
bob_env=$("$ROOT/deploy/local-cluster" agent-cert bob)
bob() { (eval "$bob_env" && unset STIG_AGENT && "$STIG" "$@"); }
"$STIG" acl grant agent:bob write orders/
"$STIG" acl list

step "bob writes outside his prefix: refused with exit 5"
set +e
bob put stock/1 5
echo "exit $?"
set -e
"$STIG" get stock/1

step "bob writes inside it (recorded as bob)"
bob put "$key" packed
"$STIG" get "$key"

step "bob may not change the rules"
set +e
bob acl grant agent:bob write ''
echo "exit $?"
set -e

step "clean up"
"$STIG" acl revoke agent:bob write orders/
