#pragma once
// The outbox's durable queue: an SQLite database in WAL mode in which every message is committed
// (fsync'd) before anyone may send it, so a crash or a power cut loses nothing that was accepted.
// Bounded by a message count and a byte budget: when full, replay answers and telemetry go before alerts, the
// oldest first, and a message only ever makes room by dropping messages no more important than
// itself; one that cannot fit that way is refused. Drops and refusals are counted (persistently).
// It also holds the outbox's stream (docs/mqtt.md, "Sequence numbers and replay"): the stream's id,
// the last number assigned and the highest acknowledged (table meta), and the numbered messages the
// broker acknowledged, kept for replay requests (table sent).

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/sqlite_db.hpp"
#include "common/time.hpp"

namespace kg::outbox {

// What goes first when the outbox is full: replay answers, then telemetry, then evidence, alerts last.
// replay: the answers to the room's replay requests (copies of messages the broker acknowledged once,
// and lost reports). Below everything live: an answer never drops an undelivered message, and one
// dropped is asked for again.
enum class Priority : int { alert = 0, evidence = 1, telemetry = 2, replay = 3 };

// What committing a message does to the store's record of the events open in the room, in the same
// transaction: a start (or an update) records its event as open, an end removes it. The record and
// the queue then agree whatever moment a crash picks, and the next start can end what was left open.
// An end that never reaches the room (dropped from a full queue, moved aside) puts the record back.
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
    std::int64_t seq = 0;  // assigned by the store, increasing: its place in the queue
    std::string topic;
    std::string payload;
    int qos = 1;
    bool retain = false;
    Priority priority = Priority::alert;
    OpenEventMark open_event{};
    ClipMark clip{};
    // Its number in the outbox's stream (the payload's "seq"), 0 for a message without one
    // (snapshots, roll-ups, lost reports). A replayed copy (Priority::replay) carries the number of the
    // message it repeats: it is never given, acknowledged or kept in the sent table as a new one.
    std::int64_t stream_seq = 0;
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
        // The numbered messages acknowledged are kept this long within this many bytes (the oldest
        // numbers go first), for replay requests; 0 keeps none.
        std::chrono::seconds keep_sent{std::chrono::hours(24 * 7)};
        std::size_t keep_sent_bytes = 16u << 20;
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
    // a refused message changes no record either. Its stream_seq, if any, is recorded as assigned
    // even when it is refused, so that the number is never given again.
    Appended append(Message& message);
    // Appends the messages as append() would, in one transaction (one sync to the disk instead of
    // one per message): all of them or, if the store fails, none.
    std::vector<Appended> append_all(std::vector<Message>& messages);
    // Per class of what is sent (alerts with their evidence, roll-ups, replay answers), the seq up
    // to which all was sent: the messages at or below it that are still queued were sent and could
    // not be removed yet (the store failing). Each class goes in seq order, so one cursor a class.
    struct Sent {
        std::int64_t live = 0, telemetry = 0, replay = 0;
        void mark(Priority p, std::int64_t seq);
    };
    // What to send next: the oldest alert or evidence message queued, else the oldest roll-up,
    // else the oldest replay answer; of those past `sent`.
    std::optional<Message> front(const Sent& sent);
    std::optional<Message> front();
    // Removes a message the broker acknowledged. A numbered one is copied into the sent table in the
    // same transaction (unless keep_sent is 0) and becomes the highest acknowledged if it is.
    void remove(std::int64_t seq);
    // Records in the sent table a numbered message that was acknowledged without ever being stored
    // (sent from the memory overflow while the store failed).
    void record_sent(const Message& message);
    // Deletes the sent messages acknowledged before now - keep_sent (Unix seconds). remove() calls it
    // at most once a minute.
    void prune_sent(std::int64_t now);

    // The stream: its id (16 lowercase hex digits, chosen when the database was created), the
    // highest number any message was given in it as far as the store knows (messages held in
    // memory while it failed may have higher ones), and the highest the broker acknowledged.
    const std::string& stream() const { return stream_.id; }
    // When the stream began: unknown for one begun by a version that did not keep it.
    std::optional<TimePoint> stream_started() const { return stream_.started; }
    struct Stream {
        std::string id;
        std::optional<TimePoint> started;
    };
    std::int64_t last_stream_seq() const;
    std::int64_t highest_acknowledged() const;

    // Where the numbers from..to of the stream are, for a replay request at `now` (Unix seconds):
    // the messages kept (acknowledged within keep_sent), the numbers still queued, those moved aside.
    struct SentMessage {
        std::int64_t stream_seq = 0;
        std::string topic, payload;
    };
    struct Whereabouts {
        std::vector<SentMessage> kept;           // by number
        std::vector<std::int64_t> queued, dead;  // sorted
    };
    Whereabouts whereabouts(std::int64_t from, std::int64_t to, std::int64_t now);
    // The payloads of the last `limit` numbered messages on `topic`, sent (kept in the sent table) or
    // still queued, oldest first: what a new run shows of the events the runs before it published.
    // With `containing`, only the payloads that hold that text (a label), over all those kept.
    std::vector<std::string> latest_numbered(const std::string& topic, std::size_t limit,
                                             const std::string& containing = {});
    // The payloads of the last `limit` numbered messages on `topic` whose `id` is `event_id` (sent or
    // queued), oldest first; by an index, not a scan.
    std::vector<std::string> numbered_of_event(const std::string& topic, const std::string& event_id,
                                               std::size_t limit);
    std::size_t sent_count() const;
    std::size_t sent_bytes() const;
    // The gateway's heartbeat (milliseconds since the epoch), kept in the meta table: after a crash,
    // when the run was last alive, which no message need say on a quiet site (roll-ups are not
    // numbered, so the sent table keeps none). Unset: no run wrote one.
    void note_alive(std::int64_t unix_ms);
    std::optional<std::int64_t> alive_at();
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
    bool room_possible(std::size_t incoming_bytes, Priority incoming);  // caller holds mutex_
    std::size_t drop_for_room(std::size_t incoming_bytes, Priority incoming);
    void save_counter(const char* key, std::uint64_t value);
    bool erase(std::int64_t seq);       // caller holds mutex_
    void insert(Message& message);      // caller holds mutex_, inside a transaction; sets seq
    Appended add(Message& message);     // caller holds mutex_, inside a transaction
    void mark(const Message& message);  // caller holds mutex_, inside the message's transaction
    void load_totals();
    void note_assigned(std::int64_t stream_seq);      // caller holds mutex_, inside a transaction
    void note_acknowledged(std::int64_t stream_seq);  // caller holds mutex_, inside a transaction
    void trim_sent();                                 // caller holds mutex_, inside a transaction
    void expire_sent(std::int64_t now);               // caller holds mutex_, inside a transaction

    Limits limits_;
    sqlite::Db db_;
    Stream stream_;  // set up (and the schema brought up to date) before any statement is prepared
    // Declared after db_: finalized before the connection closes.
    sqlite::Stmt insert_, front_, remove_, oldest_of_, save_meta_, raise_meta_, bury_, trim_dead_, open_,
        close_, closing_, reopen_, closed_, clip_pending_, clip_reported_, keep_sent_, insert_sent_,
        drop_oldest_sent_, expire_sent_;
    mutable std::mutex mutex_;
    // The queue's messages and bytes by priority (indexed by Priority): what a message may push out
    // is known without a query. Summed over the whole queue, that query took 0.1-0.2 s at 100 000
    // messages, and ran for every message once the queue was full (a review of the 53rd session).
    struct Totals {
        std::size_t count = 0, bytes = 0;
    };
    std::array<Totals, 4> by_priority_{};
    Totals& totals_of(Priority p);  // a priority no version wrote counts as the least important
    // The messages of priorities [from, to): all of them by default.
    Totals sum(int from = 0, int to = 4) const;
    void counted_in(Priority p, std::size_t size);
    void counted_out(Priority p, std::size_t size);
    bool fits(Totals queued, std::size_t incoming_bytes) const;
    std::uint64_t dropped_ = 0, refused_ = 0, dead_ = 0;
    std::int64_t last_stream_seq_ = 0, acknowledged_ = 0;
    std::size_t sent_count_ = 0, sent_bytes_ = 0;
    std::int64_t last_prune_ = 0;  // Unix seconds
};

}  // namespace kg::outbox
