#!/usr/bin/env bash
# Adds (or resets) a canteen's broker credentials: username = site id, so the ACL's patterns
# confine it to kitchen/<site>/. Prints the password once.
# Usage: deploy/mosquitto/add-site.sh SITE_ID [PASSWD_FILE]
set -euo pipefail
site="${1:?usage: add-site.sh SITE_ID [PASSWD_FILE]}"
file="${2:-/etc/mosquitto/kitchen/passwd}"
[[ "$site" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || { echo "add-site: '$site' is not a site id" >&2; exit 2; }
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
touch "$file"
mosquitto_passwd -b "$file" "$site" "$password"
echo "site $site: username $site password $password (put it in the gateway's KG_MQTT_PASSWORD)"
