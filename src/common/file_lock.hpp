#pragma once
// An exclusive lock on a file, held for the object's life (flock: the kernel lets it go when the
// process ends, even by SIGKILL, so a crash never leaves it stale).

#include <stdexcept>
#include <string>

namespace kg {

class FileLock {
public:
    // Thrown when another process holds the lock: names the path and the holder's pid.
    struct Held : std::runtime_error {
        using std::runtime_error::runtime_error;
    };
    // Creates `path` if needed and locks it. Throws Held if another process holds it, and
    // std::runtime_error if the file cannot be opened or locked at all.
    explicit FileLock(std::string path);
    ~FileLock();
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

    const std::string& path() const { return path_; }

private:
    std::string path_;
    int fd_ = -1;
};

}  // namespace kg
