// crash_connector: the crash harness's exec connector (issue 14). It reads
// the job (one JSON line) from stdin and appends it to the file argv[1]
// with one write(2) on an O_APPEND descriptor, then exits 0; one time in
// ten, unless the file argv[2] exists, it says "try later" (exit 75) and
// takes nothing. A program rather than a shell script so that the
// connector keeps up with the harness's workload: one process a job.

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fputs("usage: crash_connector RECEIVED_FILE STEADY_FILE\n", stderr);
    return 2;
  }
  std::string job;
  char buf[4096];
  for (ssize_t n; (n = ::read(0, buf, sizeof buf)) != 0;) {
    if (n < 0) return 1;
    job.append(buf, static_cast<std::size_t>(n));
  }
  if (job.empty() || job.back() != '\n') job.push_back('\n');
  if (::access(argv[2], F_OK) != 0) {
    unsigned char r = 0;
    if (::getrandom(&r, 1, 0) == 1 && r < 26) {
      std::puts("busy, try later");
      return 75;
    }
  }
  const int fd = ::open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return 1;
  const bool whole = ::write(fd, job.data(), job.size()) == static_cast<ssize_t>(job.size());
  return ::close(fd) == 0 && whole ? 0 : 1;
}
