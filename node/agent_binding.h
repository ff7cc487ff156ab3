// Binds a client request's agent to the credential of its connection.
//
// Interim transport-side rule until the core's access rules (the ACL work,
// docs/access-control.md) take the decision over; kept in this one function
// so it can move into replication/ at that merge:
//  - an unauthenticated connection (the node runs with --insecure-plaintext)
//    is trusted to name any agent, as before;
//  - an authenticated one that names no agent acts as the certificate's agent;
//  - one that names another agent is refused, unless the certificate's agent
//    is the cluster's admin agent (--admin-agent), which may act for others
//    (as Kubernetes impersonation), so modified_by says whom it acted for.
#pragma once

#include <optional>
#include <string>

#include "replication/replica.h"
#include "stigmergy.pb.h"

namespace stig::node {

// Applies the rule to `request` (fills in an empty agent). nullopt if the
// request may go on; otherwise the one-line reason to refuse it with
// PERMISSION_DENIED.
std::optional<std::string> bind_request_agent(const replication::ClientIdentity& identity,
                                              stigmergy::v1::Request& request, const std::string& admin_agent);

}  // namespace stig::node
