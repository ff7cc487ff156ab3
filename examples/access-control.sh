#!/usr/bin/env bash
# Access rules: bob may write orders/ and nothing else.
#
# The admin agent grants bob write on the orders/ prefix; bob's write to
# stock/1 is refused (exit 5, one line naming the agent, the key and the
# missing permission) and nothing is written; his write to orders/1 works.
# Over plaintext the agent is only what the client claims: this shows how
# rules behave, it is not security (docs/access-control.md).
#
# Needs a running cluster whose nodes were started with --access-control
# (deploy/local-cluster does not add it: start stigd by hand as in
# docs/node.md, adding --access-control to every node).
# Usage: examples/access-control.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STIG=${STIG:-$ROOT/build/bin/stig}
export STIG_ENDPOINTS=${STIG_ENDPOINTS:-127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103}

[ -x "$STIG" ] || { echo "error: $STIG not found; build first (see README)" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

step "the admin agent grants bob write on orders/"
"$STIG" --agent admin acl grant agent:bob write orders/
"$STIG" --agent admin acl list

step "bob writes outside his prefix: refused with exit 5"
set +e
"$STIG" --agent bob put stock/1 5
echo "exit $?"
set -e
"$STIG" --agent admin get stock/1

step "bob writes inside it"
"$STIG" --agent bob put orders/1 packed

step "bob may not change the rules"
set +e
"$STIG" --agent bob acl grant agent:bob write ''
echo "exit $?"
set -e

step "clean up"
"$STIG" --agent admin acl revoke agent:bob write orders/
