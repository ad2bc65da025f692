#include <iostream>

#include "capabilities/kernel_capabilities.h"

int main() { return edgetrace::capabilities::run_doctor(std::cout); }
