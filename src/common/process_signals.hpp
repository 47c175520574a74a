#pragma once
// The daemon's stop and reload signals (SIGINT, SIGTERM, SIGHUP), held for the whole process instead
// of for one run: they are blocked in every thread and read from one signalfd, so a signal that
// arrives while nothing waits for it (models loading at the start, the rebuild of a reload) stays
// pending and is handled by the next run, instead of killing the process with its default action.

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>

namespace kg {

class ProcessSignals {
public:
    // Blocks the signals in the calling thread and opens the signalfd. Construct it in main before
    // any thread starts: threads inherit the mask, and a thread without it would take the signal
    // with its default action. Throws std::system_error naming the call that failed.
    ProcessSignals();
    ~ProcessSignals();
    ProcessSignals(const ProcessSignals&) = delete;
    ProcessSignals& operator=(const ProcessSignals&) = delete;

    // The next pending signal's number, or 0 when none is pending (never blocks).
    int take() const;

    int fd() const { return fd_; }

private:
    int fd_ = -1;
};

// Waits for ProcessSignals on one io_context (one run of the gateway); destroying it leaves the
// signals pending for the next one.
class SignalWatch {
public:
    SignalWatch(boost::asio::io_context& io, const ProcessSignals& signals);

    // Calls on_signal(signo) on the io_context's thread for each signal, until cancel() or destruction.
    void start(std::function<void(int)> on_signal);
    void cancel();

private:
    void wait();

    const ProcessSignals& signals_;
    boost::asio::posix::stream_descriptor fd_;  // a dup of the signalfd, closed with this object
    std::function<void(int)> on_signal_;
};

}  // namespace kg
