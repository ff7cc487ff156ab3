// The JSON form of a strong transaction that `stig strong txn` reads from
// stdin (schema in 'stig strong txn --help' and docs/cli.md).
#pragma once

#include <string>

#include "stigmergy/result.h"
#include "stigmergy/strong.h"

namespace stig_cli {

// Parses and validates a transaction. Errors are kInvalidArgument with one
// line naming the problem and where ("txn: compare[1]: ...").
stigmergy::Result<stigmergy::Txn> parse_txn_json(const std::string& text);

}  // namespace stig_cli
