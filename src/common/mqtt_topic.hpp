#pragma once
// MQTT topic filters as the specification defines them (MQTT 3.1.1 section 4.7): checked where the
// configuration is read, matched where sensor messages arrive.

#include <string>

namespace kg {

// Why `filter` is not a valid MQTT topic filter, or empty when it is: a broker disconnects a client
// that subscribes with an invalid one.
std::string topic_filter_problem(const std::string& filter);

// Why `prefix` cannot be the first level(s) of the site's topics, or empty when it can: levels not
// empty, no wildcard, no NUL, not starting with '$' (a broker keeps such topics for itself: Mosquitto
// drops what a client publishes there and still acknowledges it under MQTT 3.1.1, so every alert
// would be taken for delivered and lost).
std::string topic_prefix_problem(const std::string& prefix);

// Whether a broker URL's scheme is TLS (ssl://, mqtts://, wss://).
bool tls_broker_url(const std::string& url);

// Why TLS settings cannot go with `url`, or empty when they can: with a plain URL they used to be
// dropped without a word, and the link ran in the clear. `shown`: the URL as the message may show it.
std::string tls_settings_problem(const std::string& url, const std::string& shown);

// Whether a message on `topic` matches `filter`: '+' is one level, '#' the rest including none
// ("a/#" matches "a"); wildcards at the first level do not match topics starting with '$'.
bool topic_matches(const std::string& filter, const std::string& topic);

}  // namespace kg
