#pragma once
// The outbox's durable queue: an SQLite database in WAL mode in which every message is committed
// (fsync'd) before anyone may send it, so a crash or a power cut loses nothing that was accepted.
// Bounded by a message count and a byte budget: when full, telemetry goes before alerts, the
// oldest first, and a message only ever makes room by dropping messages no more important than
// itself; one that cannot fit that way is refused. Drops and refusals are counted (persistently).

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/sqlite_db.hpp"

namespace kg::outbox {

// What goes first when the outbox is full: telemetry, then evidence, alerts last.
enum class Priority : int { alert = 0, evidence = 1, telemetry = 2 };

// What committing a message does to the store's record of the events open in the room, in the same
// transaction: a start (or an update) records its event as open, an end removes it. The record and
// the queue then agree whatever moment a crash picks, and the next start can end what was left open.
struct OpenEventMark {
    enum class Kind { none, open, close };
    Kind kind = Kind::none;
    std::string id;      // the event's id
    std::string record;  // Kind::open: what ending the event later takes (opaque to the store)
};

// The same for the clips the room was promised: a start that names a clip (evidence.clip) records it
// as pending, in the start's transaction; the clip's report (written or not) removes it. A clip still
// pending at a start was never reported: the run that promised it died first.
struct ClipMark {
    enum class Kind { none, pending, reported };
    Kind kind = Kind::none;
    std::string event_id;
    std::string record;  // Kind::pending: what reporting the clip later takes (opaque to the store)
};

struct Message {
    std::int64_t seq = 0;  // assigned by the store, increasing
    std::string topic;
    std::string payload;
    int qos = 1;
    bool retain = false;
    Priority priority = Priority::alert;
    OpenEventMark open_event{};
    ClipMark clip{};
};

// An event the record holds as open, or a clip it holds as pending (id: the event's).
struct OpenEvent {
    std::string id;
    std::string record;
};

// The outbox's callers catch this one type for any failure of the store, whichever SQLite call
// it came from.
using StoreError = sqlite::Error;

class SqliteStore {
public:
    struct Limits {
        std::size_t max_messages = 100000;
        std::size_t max_bytes = 256u << 20;
        // The dead table keeps the newest messages moved aside within these; older ones are
        // deleted, so a broker that refuses everything for months cannot fill the disk.
        std::size_t max_dead = 1000;
        std::size_t max_dead_bytes = 32u << 20;
    };

    // path ":memory:" keeps the queue in memory (tests, or a box without storage).
    SqliteStore(const std::string& path, Limits limits);
    SqliteStore(const SqliteStore&) = delete;
    SqliteStore& operator=(const SqliteStore&) = delete;

    struct Appended {
        bool stored = true;       // false: refused, it alone exceeds the budget or would need
                                  // more important messages dropped to fit
        std::size_t dropped = 0;  // older messages dropped to make room
    };
    // Commits the message (and sets its seq) and its open_event and clip marks unless it is refused;
    // a refused message changes no record either.
    Appended append(Message& message);
    // The oldest message queued, or the oldest after seq `after` (those before it were sent, and
    // could not be removed yet).
    std::optional<Message> front(std::int64_t after = 0);
    void remove(std::int64_t seq);
    // Moves a message the broker keeps refusing out of the queue into the `dead` table, where it
    // stays (with `reason`) for someone to look at; the queue behind it flows on. A message that
    // was never stored (seq <= 0) is only written there. Returns how many older moved-aside
    // messages were deleted to keep the table within max_dead / max_dead_bytes.
    std::size_t bury(const Message& message, const std::string& reason);
    // Puts the messages moved aside back at the end of the queue, oldest first, into the room the
    // budget has free (a message that does not fit stays aside; nothing queued is dropped for it). For after
    // the cause was removed (the broker's max_packet_size raised, its ACL mended). Returns how many went
    // back.
    std::size_t requeue_dead();
    struct DeadMessage {
        std::int64_t seq = 0, queued_seq = 0, moved_at = 0;  // moved_at: Unix seconds
        std::string topic, reason;
        std::size_t bytes = 0;
        Priority priority = Priority::alert;
    };
    std::vector<DeadMessage> dead_messages(std::size_t limit);  // newest first

    // The events recorded as open, oldest first: at a start, those the previous run left open.
    std::vector<OpenEvent> open_events();
    // Removes an event from the record without a message (its record cannot be read).
    void forget_open_event(const std::string& id);
    // The clips recorded as pending, oldest first: at a start, those the previous run promised and
    // never reported.
    std::vector<OpenEvent> pending_clips();
    // Removes a clip from the record without a message (its record cannot be read).
    void forget_pending_clip(const std::string& event_id);

    const Limits& limits() const { return limits_; }
    std::size_t size() const;
    std::size_t bytes() const;
    std::uint64_t dropped_total() const;
    std::uint64_t refused_total() const;
    std::uint64_t dead_total() const;  // messages ever moved aside (the table keeps the newest)

private:
    bool fits(std::size_t count, std::size_t bytes, std::size_t incoming_bytes) const;
    bool room_possible(std::size_t incoming_bytes, Priority incoming);  // caller holds mutex_
    std::size_t drop_for_room(std::size_t incoming_bytes, Priority incoming);
    void save_counter(const char* key, std::uint64_t value);
    bool erase(std::int64_t seq);       // caller holds mutex_
    void insert(Message& message);      // caller holds mutex_, inside a transaction; sets seq
    void mark(const Message& message);  // caller holds mutex_, inside the message's transaction
    void load_totals();

    Limits limits_;
    sqlite::Db db_;
    // Declared after db_: finalized before the connection closes.
    sqlite::Stmt insert_, front_, remove_, oldest_of_, evictable_, save_meta_, bury_, trim_dead_, open_,
        close_, clip_pending_, clip_reported_;
    mutable std::mutex mutex_;
    std::size_t count_ = 0, bytes_ = 0;
    std::uint64_t dropped_ = 0, refused_ = 0, dead_ = 0;
};

}  // namespace kg::outbox
