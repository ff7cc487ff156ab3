#include "node/agent_binding.h"

#include "replication/printable.h"

namespace stig::node {

std::optional<std::string> bind_request_agent(const replication::ClientIdentity& identity,
                                              stigmergy::v1::Request& request, const std::string& admin_agent) {
  if (!identity.authenticated) return std::nullopt;
  if (request.agent().empty()) {
    request.set_agent(identity.agent);
    return std::nullopt;
  }
  if (request.agent() == identity.agent) return std::nullopt;
  if (!admin_agent.empty() && identity.agent == admin_agent) return std::nullopt;
  return "agent '" + replication::printable(request.agent(), 64) + "' does not match the credential's agent '" +
         replication::printable(identity.agent, 64) + "'";
}

}  // namespace stig::node
