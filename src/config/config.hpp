#pragma once
// The typed configuration tree of kitchen-gateway. Loaded from one YAML file by
// config::load_file(); every value here has already been validated.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kg::config {

using Duration = std::chrono::milliseconds;

struct Site {
    std::string id;    // canteen id, used in every MQTT topic; [A-Za-z0-9_-]+
    std::string name;  // human name shown to the monitor and parents
    std::string timezone = "Asia/Shanghai";
    std::vector<std::string> holidays;  // "YYYY-MM-DD": the canteen is closed all day
};

// Weekly windows in the site's time zone; `inverted` = active when the windows are not.
struct Schedule {
    std::string name;
    unsigned days = 0x7f;            // bit 0 = Monday
    std::vector<std::string> times;  // "06:00-13:30"; an end before the start crosses midnight
    bool on_holidays = false;
    bool inverted = false;
};

struct Tls {
    std::string ca_file;    // empty: system trust store
    std::string cert_file;  // client certificate (optional, with key_file)
    std::string key_file;
    bool verify_server = true;
    bool operator==(const Tls&) const = default;
};

// A broker the gateway reads from and the account it reads with (sensors_mqtt).
struct BrokerAccount {
    std::string url;
    std::string username;
    std::string password;
    std::optional<Tls> tls;
    bool operator==(const BrokerAccount&) const = default;
};

struct Mqtt {
    std::string url = "tcp://127.0.0.1:1883";  // tcp://, ssl://, mqtt://, mqtts://, ws://, wss://
    std::string client_id;                     // default: kitchen-gateway-<site.id>
    std::string topic_prefix = "kitchen";
    std::string username;
    std::string password;
    std::optional<Tls> tls;
    Duration keepalive{std::chrono::seconds(30)};
    Duration reconnect_min{std::chrono::seconds(1)};
    Duration reconnect_max{std::chrono::seconds(60)};
    Duration state_interval{std::chrono::seconds(10)};  // retained camera state republish period
};

enum class Transport { tcp, udp };

// How one camera is read. Per-camera values override `defaults.input`.
struct Input {
    Transport transport = Transport::tcp;        // RTSP only
    Duration timeout{std::chrono::seconds(10)};  // a read blocked longer than this is a stall
    Duration reconnect_min{std::chrono::seconds(1)};
    Duration reconnect_max{std::chrono::seconds(30)};
    // A connection that delivered frames this long is healthy: the next failure starts the back-off
    // from reconnect_min again.
    Duration reconnect_healthy_after{std::chrono::seconds(10)};
    bool loop = false;     // files only: start again at the end (demos and tests)
    bool realtime = true;  // files only: read at the stream's own pace, like `ffmpeg -re`
    // V4L2 devices only: the picture format asked of the device (FFmpeg's `-input_format`: mjpeg,
    // h264, yuyv422, ...); empty: the device's own choice, often raw pictures no clip can hold.
    std::string format;
    bool operator==(const Input&) const = default;
};

struct Analysis {
    double fps = 2.0;  // frames analysed per second
    int width = 640;   // analysis size; every frame is scaled once to this
    int height = 360;
    bool keyframes_only = false;  // decode only key frames (boxes with many cameras)
    bool operator==(const Analysis&) const = default;
};

// Camera health thresholds (the regulators' "offline, black, blocked, frozen").
struct Health {
    Duration offline_after{std::chrono::seconds(20)};  // no frame for this long -> offline
    double black_luma = 25.0;                          // mean luma (0-255) at or below which a frame is black
    double blank_stddev = 6.0;       // luma standard deviation below which a frame is blank (uniform)
    double covered_fraction = 0.75;  // fraction of featureless cells that makes a covered lens
    Duration frozen_after{std::chrono::seconds(30)};  // identical picture this long -> frozen
    double frozen_diff = 0.6;  // mean abs difference (0-255) below which two frames are the same
    Duration confirm{std::chrono::seconds(5)};  // a condition must hold this long to open an event
    Duration clear{std::chrono::seconds(5)};    // and be gone this long to end it
    // The stream broke (a connection that gave pictures failed) this often in the last hour ->
    // unstable; 0: never.
    int unstable_after = 6;
    // At least this share of the pictures of the last minute damaged (decoded with errors) ->
    // damaged; 0: never.
    double damaged_share = 0.1;
    bool operator==(const Health&) const = default;
};

// What the region checks compare against and how much change counts.
struct Scene {
    std::string
        reference;  // picture of the scene as it should be (clean floor, bin closed); empty: learned at start
    // Where `reference` was written (a camera's own, or `defaults.scene.reference` it inherits), for
    // the error only reading the picture finds (app::check_detectors): its key and {line, column}.
    std::string reference_key;
    std::pair<int, int> reference_place{0, 0};
    double min_area = 0.004;  // share of the picture a change or movement must cover
    Duration unattended_after{std::chrono::minutes(5)};  // `unattended`: no movement at the station this long
    Duration detect_refresh{
        std::chrono::seconds(10)};  // detectors run at least this often even without motion
};

struct Point {
    float x = 0, y = 0;  // normalised 0..1
    bool operator==(const Point&) const = default;
};

// A named region of one camera where some checks apply (empty `checks`: all).
struct Zone {
    std::string name;
    std::vector<Point> polygon;
    std::vector<std::string> checks;
    bool operator==(const Zone&) const = default;
};

// How one check's observations become events (per camera; `defaults.rules` apply to all).
struct Rule {
    int severity = 3;                             // 1 immediate, 2 deadline, 3 routine
    Duration confirm{std::chrono::seconds(5)};    // seen this long before an event starts
    Duration clear{std::chrono::seconds(10)};     // gone this long before it ends
    Duration cooldown{std::chrono::seconds(60)};  // no new event for the same camera+check+zone within this
    double threshold = 0.5;                       // the smoothed score that counts as present
    int median_window = 3;                        // smoothed score = median of the last N frames
    std::string schedule;                         // empty: always; else a name from `schedules`
    bool operator==(const Rule&) const = default;
};

struct Camera {
    std::string id;  // [A-Za-z0-9_-]+, unique
    std::string name;
    std::string url;  // rtsp://, rtsps://, rtmp://, http(s)://, file path or file://, /dev/videoN or v4l2://
    bool is_public = false;
    bool enabled = true;
    std::vector<std::string> checks{"camera_health"};
    Input input;
    Analysis analysis;
    Health health;
    Scene scene;
    std::vector<Zone> zones;
    std::vector<std::vector<Point>> masks;  // ignore: detections there never count
    // Pixelated on the public feed (which is then re-encoded); the analysis still sees everything.
    std::vector<std::vector<Point>> privacy_masks;
    std::map<std::string, Rule> rules;  // by check name; every check in `checks` has one
    int source_line = 0;                // where the camera was declared, for run-time messages
};

// The durable queue of messages waiting for the broker's acknowledgement.
struct Outbox {
    std::string path = "/var/lib/kitchen-gateway/outbox.db";  // ":memory:" keeps it in memory only
    std::size_t max_messages = 100000;
    std::size_t max_bytes = 256u << 20;
    // The numbered messages the broker acknowledged are kept this long, within this many bytes, for
    // the room's replay requests (docs/mqtt.md); 0 keeps none.
    Duration keep_sent{std::chrono::hours(24 * 7)};
    std::size_t keep_sent_bytes = 16u << 20;
};

// Snapshots and clips that prove events.
struct Evidence {
    std::string path = "/var/lib/kitchen-gateway/evidence";
    std::size_t max_bytes = std::size_t{2} << 30;   // never exceeded: the oldest files go first
    Duration max_age{std::chrono::hours(24 * 15)};  // provinces ask 7-15 days of retention
    // Kept free on the disk holding the folder (the oldest files go first): the outbox and the
    // system's logs share that disk, and a budget may be larger than what is free on it. 0: off.
    std::size_t min_free = std::size_t{1} << 30;
    Duration clip_pre{std::chrono::seconds(5)};
    Duration clip_post{std::chrono::seconds(5)};
    int jpeg_quality = 85;
    bool mqtt_snapshots = true;  // also publish each start snapshot as a JPEG on MQTT
};

// Frames saved unannotated for labelling a canteen's own training and test photos
// (models/README.md, "Your own kitchen's photos"). Off unless configured: they show staff.
struct TrainingFrames {
    bool enabled = false;
    std::string path = "/var/lib/kitchen-gateway/training-frames";
    Duration every{std::chrono::minutes(10)};      // one frame per camera per interval
    std::size_t max_bytes = std::size_t{2} << 30;  // all cameras together; the oldest frames go first
    Duration max_age{std::chrono::hours(24 * 30)};
    std::size_t min_free = std::size_t{1} << 30;  // as Evidence::min_free
    int jpeg_quality = 95;                        // labelling and training want few artefacts
    std::string schedule;  // only while this schedule is active (e.g. service hours); empty: always
    std::vector<std::string> cameras;  // camera ids; empty: every camera
};

// Where a sensor's readings come from.
struct SensorSource {
    enum class Kind { mqtt, modbus } kind = Kind::mqtt;
    // MQTT JSON (Zigbee2MQTT, Tasmota...): the topic, and dotted paths into the payload.
    std::string topic;
    std::string value_path = "temperature";  // e.g. "temperature", "StatusSNS.DS18B20.Temperature"
    std::string time_path;                   // optional: the reading's own time (ISO 8601 or epoch seconds)
    // Modbus: "tcp://host:port" or "rtu:/dev/ttyUSB0" (with baud, parity, data and stop bits).
    std::string device;
    int baud = 9600;
    char parity = 'N';
    int data_bits = 8, stop_bits = 1;
    int unit_id = 1;
    int address = 0;
    bool input_register = false;  // function 04 instead of 03 (holding)
    enum class Type { int16, uint16, int32, uint32, float32 } type = Type::int16;
    bool low_word_first = false;       // word order of 32-bit values
    double scale = 1.0, offset = 0.0;  // value = raw * scale + offset
    // How long a read waits for its answer (a radio link or a Modbus gateway may need more).
    Duration response_timeout{std::chrono::seconds(1)};
    bool operator==(const SensorSource&) const = default;
};

// A limit with a duration: e.g. sample fridge above 8 degC for 10 minutes.
struct Threshold {
    std::string label;  // event label, e.g. "too_warm"
    bool above = true;  // the violation is the value above (else below) `value`
    double value = 0;
    double hysteresis = 0.5;  // the violation ends only past value -/+ hysteresis
    Duration for_time{std::chrono::minutes(10)};
    Duration clear_for{std::chrono::minutes(1)};
    // No new event within this long of the last one's end: a gas detector that crosses its limit
    // once a minute is one alert a cooldown, not sixty an hour. None by default: a fridge warm again
    // is news.
    Duration cooldown{0};
    int severity = 2;
    std::string schedule;  // empty: always
    // Whether `for` and `hysteresis` were written, not taken from the sensor's kind: a kind the
    // gateway does not know gives a measurement's defaults, which a detector's alarm must not get
    // unnoticed (config::doubts).
    bool for_given = false, hysteresis_given = false;
    bool operator==(const Threshold&) const = default;
};

// A disinfection cabinet counts a cycle only when it stays at or above `setpoint` for `min_time`;
// after each window of `schedule` (the meal services), no complete cycle in it is an event.
struct Disinfection {
    double setpoint = 120.0;
    Duration min_time{std::chrono::minutes(10)};
    std::string schedule;
    int severity = 2;
    bool operator==(const Disinfection&) const = default;
};

struct Sensor {
    std::string id, name;
    std::string kind = "temperature";  // lower case: temperature, humidity, gas, door, power, ...
    std::string location;              // fridge, freezer, sample_fridge, cabinet, ready_to_eat_room, ...
    std::string unit = "degC";         // by default the kind's (none for a kind without one)
    Duration interval{std::chrono::seconds(60)};  // expected reporting (MQTT) or polling (Modbus) interval
    int stale_after = 3;                          // intervals without a reading: offline
    std::optional<double> min_valid, max_valid;   // physically possible range
    SensorSource source;
    bool value_path_given = false;  // source.mqtt.value written (else the kind's field)
    std::vector<Threshold> thresholds;
    std::optional<Disinfection> disinfection;
    int source_line = 0;

    // How long without a reading the sensor is offline: `stale_after` intervals, and half an interval
    // more (at most 5 s) for the readings' own jitter. A device reporting every `interval`, or a
    // Modbus poll, arrives a little after the interval as often as before it: with `stale_after: 1`
    // and no margin, a sensor that never missed a reading went offline and back at every other one.
    Duration silence_limit() const {
        return interval * stale_after + std::min<Duration>(interval / 2, std::chrono::seconds(5));
    }
};

// The local HTTP side: health, readiness, metrics and the token-protected JSON API.
struct Api {
    std::string listen = "127.0.0.1:8080";  // loopback by default; empty: off
    std::string token;                      // the /api routes are off without one (never a default)
    Duration header_timeout{std::chrono::seconds(10)};
    Duration idle_timeout{std::chrono::seconds(30)};
};

// The public side for parents: live HLS and HTTP-FLV of the cameras marked `public`, an optional
// RTMP push to a media server, and a status summary.
struct Public {
    std::string listen;  // e.g. "0.0.0.0:8081"; empty: off (the public side is opt-in)
    std::string hls_dir = "/dev/shm/kitchen-gateway/hls";  // tmpfs: segments never touch the disk
    Duration segment{std::chrono::seconds(2)};
    std::string hours;      // a schedule name: the feeds are on only within it; empty: always
    bool flv = true;        // HTTP-FLV at /live/<camera>.flv
    std::string rtmp_push;  // e.g. "rtmp://media.example/live/{site}-{camera}"; empty: off
    std::size_t max_viewers_per_camera = 50;
    std::size_t max_viewers_per_address = 8;
    std::string token_secret;  // set: stream URLs need a signed, expiring token
    int privacy_width = 640;   // cameras with privacy_masks are re-encoded at this width...
    int privacy_fps = 10;      // ...and at most this frame rate
    Duration header_timeout{std::chrono::seconds(10)};
    Duration idle_timeout{std::chrono::seconds(30)};
    std::size_t max_connections = 512;
    // Reverse proxies (or CDN nodes) in front: their X-Forwarded-For names the viewer the caps count.
    std::vector<std::string> trusted_proxies;
};

struct Log {
    std::string level = "info";  // trace, debug, info, warn, error
    bool json = false;           // one JSON object per line instead of text
    bool operator==(const Log&) const = default;
};

struct Gateway {
    Site site;
    Mqtt mqtt;
    Log log;
    Api api;
    Public public_side;
    std::vector<Schedule> schedules;
    // Detector per hygiene check: "classic:mask", "classic:head", a manifest path, or "auto"
    // (the project's own model in models/ when present, else the classic back-end).
    std::string mask_detector = "auto";
    std::string head_detector = "auto";
    std::map<std::string, std::string> models;  // user models by name -> manifest; checks "model:<name>"
    // Where `detectors.<check>` and `models.<name>` stand in the file ({line, column}, 1-based), for
    // the errors only loading the model finds (app::check_detectors).
    std::map<std::string, std::pair<int, int>> detector_places;
    Outbox outbox;
    Evidence evidence;
    TrainingFrames training_frames;
    int analysis_threads = 0;  // 0: one less than the cores, at least 1
    std::vector<Camera> cameras;
    std::vector<Sensor> sensors;
    // The edge box's broker for MQTT sensors (`sensors_mqtt`); unset: mqtt's URL, account and TLS.
    std::optional<BrokerAccount> sensors_mqtt;
    BrokerAccount sensors_broker() const {
        return sensors_mqtt ? *sensors_mqtt : BrokerAccount{mqtt.url, mqtt.username, mqtt.password, mqtt.tls};
    }
    std::string source_file;
    // The environment variables the file uses (`${NAME}`): a reload reads the file again but not
    // the environment, which is the process's from its start (systemd's EnvironmentFile=).
    std::set<std::string> environment;
};

// The checks this build knows, by config name.
const std::vector<std::string>& known_checks();

// Whether the configuration has a camera (enabled or not) or a sensor of that id.
inline bool has_camera(const Gateway& cfg, const std::string& id) {
    return std::any_of(cfg.cameras.begin(), cfg.cameras.end(), [&](const Camera& c) { return c.id == id; });
}
inline bool has_sensor(const Gateway& cfg, const std::string& id) {
    return std::any_of(cfg.sensors.begin(), cfg.sensors.end(), [&](const Sensor& s) { return s.id == id; });
}
// The camera or sensor of that id (enabled or not), or null.
inline const Camera* find_camera(const Gateway& cfg, const std::string& id) {
    const auto it =
        std::find_if(cfg.cameras.begin(), cfg.cameras.end(), [&](const Camera& c) { return c.id == id; });
    return it == cfg.cameras.end() ? nullptr : &*it;
}
inline const Sensor* find_sensor(const Gateway& cfg, const std::string& id) {
    const auto it =
        std::find_if(cfg.sensors.begin(), cfg.sensors.end(), [&](const Sensor& s) { return s.id == id; });
    return it == cfg.sensors.end() ? nullptr : &*it;
}

}  // namespace kg::config
