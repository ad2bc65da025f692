#pragma once

#include "common/unique_fd.h"

namespace edgetrace::queue {
using edgetrace::UniqueFd;
}  // namespace edgetrace::queue
