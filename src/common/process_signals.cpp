#include "common/process_signals.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <system_error>

namespace kg {

namespace {

sigset_t handled_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    return set;
}

}  // namespace

ProcessSignals::ProcessSignals() {
    const sigset_t set = handled_signals();
    if (const int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0)
        throw std::system_error(rc, std::generic_category(), "pthread_sigmask(SIGINT, SIGTERM, SIGHUP)");
    fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "signalfd(SIGINT, SIGTERM, SIGHUP)");
}

ProcessSignals::~ProcessSignals() {
    if (fd_ >= 0) ::close(fd_);
}

int ProcessSignals::take() const {
    signalfd_siginfo info{};
    const ssize_t n = ::read(fd_, &info, sizeof info);
    return n == static_cast<ssize_t>(sizeof info) ? static_cast<int>(info.ssi_signo) : 0;
}

SignalWatch::SignalWatch(boost::asio::io_context& io, const ProcessSignals& signals)
    : signals_(signals), fd_(io) {
    // asio closes the descriptor it owns: give it a duplicate, the process keeps the original.
    const int dup = ::fcntl(signals.fd(), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) throw std::system_error(errno, std::generic_category(), "dup of the signalfd");
    fd_.assign(dup);
}

void SignalWatch::start(std::function<void(int)> on_signal) {
    on_signal_ = std::move(on_signal);
    wait();
}

void SignalWatch::cancel() {
    boost::system::error_code ignored;
    fd_.cancel(ignored);
}

void SignalWatch::wait() {
    fd_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                   [this](const boost::system::error_code& ec) {
                       if (ec) return;
                       // Take one signal per wake-up: the handler may stop the io_context, and what it leaves
                       // pending must stay in the kernel for the next run rather than be read and dropped
                       // here.
                       if (const int signo = signals_.take()) on_signal_(signo);
                       wait();
                   });
}

}  // namespace kg
