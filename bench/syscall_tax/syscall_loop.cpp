// What a process pays per syscall while the agent is attached: read() one byte from
// /dev/zero and write() it to /dev/null, N times, pinned to one CPU; prints the best of five
// batches in nanoseconds per read()+write() pair. Run by bench/syscall_tax.sh.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>

int main(int argc, char** argv) {
  const long pairs = argc > 1 ? std::atol(argv[1]) : 300000;
  const int cpu = argc > 2 ? std::atoi(argv[2]) : 0;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (::sched_setaffinity(0, sizeof(one), &one) != 0) std::perror("sched_setaffinity");
  const int in = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
  const int out = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (in < 0 || out < 0 || pairs <= 0) return 2;
  char byte = 0;
  double best = std::numeric_limits<double>::max();
  for (int batch = 0; batch < 5; ++batch) {
    const auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < pairs; ++i)
      if (::read(in, &byte, 1) != 1 || ::write(out, &byte, 1) != 1) return 1;
    const std::chrono::duration<double, std::nano> elapsed = std::chrono::steady_clock::now() - start;
    if (elapsed.count() / static_cast<double>(pairs) < best) best = elapsed.count() / static_cast<double>(pairs);
  }
  std::printf("%.1f\n", best);
  return 0;
}
