#!/usr/bin/env bash
# A private CA and a broker certificate for trials and tests (use the district's PKI in production).
# Usage: deploy/tls/make-test-ca.sh OUT_DIR BROKER_HOSTNAME
set -euo pipefail
out="${1:?usage: make-test-ca.sh OUT_DIR BROKER_HOSTNAME}"
host="${2:?usage: make-test-ca.sh OUT_DIR BROKER_HOSTNAME}"
mkdir -p "$out"
cd "$out"
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=kitchen-gateway test CA" -keyout ca.key -out ca.crt
openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout broker.key -out broker.csr
printf "subjectAltName=DNS:%s,IP:127.0.0.1\n" "$host" > san.ext
openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -extfile san.ext -out broker.crt
rm -f broker.csr san.ext
# OpenSSL 3 writes the key 0600, its owner's alone, and Mosquitto started as root (its Debian
# service) drops to user mosquitto before it loads the key: it would exit "Unable to load server key
# file ... Permission denied". Group mosquitto may read it, nobody else; the CA's key stays private.
if getent group mosquitto >/dev/null && chgrp mosquitto broker.key; then
  chmod 0640 broker.key
else
  echo "make-test-ca: broker.key is not given to group mosquitto (no such group here, or not root):" \
       "on the broker's machine, as root: chgrp mosquitto broker.key && chmod 0640 broker.key" >&2
fi
echo "CA: $out/ca.crt (mqtt.tls.ca_file on the gateways); broker: $out/broker.crt, $out/broker.key"
