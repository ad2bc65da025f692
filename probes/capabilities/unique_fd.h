#pragma once

#include "common/unique_fd.h"

namespace edgetrace::capabilities {
using edgetrace::UniqueFd;
}  // namespace edgetrace::capabilities
