#pragma once
// An owned POSIX file descriptor: closed when it goes, or now by close() to hear its error; moved,
// it goes with its new owner.

#include <unistd.h>

#include <utility>

namespace kg {

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) {
            if (fd_ >= 0) ::close(fd_);
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }
    // Hands the descriptor to another owner (one that closes it itself).
    int release() { return std::exchange(fd_, -1); }
    // Closes now: close() can report a write-back error that fsync() did not.
    bool close() { return ::close(std::exchange(fd_, -1)) == 0; }

private:
    int fd_;
};

}  // namespace kg
