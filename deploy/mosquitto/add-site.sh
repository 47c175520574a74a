#!/usr/bin/env bash
# Adds (or resets) a canteen's broker credentials: username = site id, so the ACL's patterns
# confine it to kitchen/<site>/. Prints the password once.
# Usage: deploy/mosquitto/add-site.sh SITE_ID [PASSWD_FILE]
set -euo pipefail
site="${1:?usage: add-site.sh SITE_ID [PASSWD_FILE]}"
deployed=/etc/mosquitto/kitchen/passwd
file="${2:-$deployed}"
[[ "$site" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || { echo "add-site: '$site' is not a site id" >&2; exit 2; }
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
# The file holds every site's password hash: root may write it and Mosquitto, which reads it as user
# mosquitto once it dropped root, may read it; nobody else. Set before a password goes in, and mended
# on a file an earlier version of this script left world-readable (mosquitto_passwd keeps the mode).
(umask 077 && touch "$file")
if getent group mosquitto >/dev/null && chgrp mosquitto "$file"; then
  chmod 0640 "$file"
else
  chmod o-rwx "$file"
  echo "add-site: $file is not given to group mosquitto (no such group here, or not root): make it" \
       "readable by the user Mosquitto runs as, and no one else" >&2
fi
mosquitto_passwd -b "$file" "$site" "$password"
echo "site $site: username $site password $password (put it in the gateway's KG_MQTT_PASSWORD)"
# Mosquitto reads password_file only at start and on SIGHUP: until then the new site is refused. The
# broker's own file is reloaded here when its Debian service runs; any other file (a trial's, a test's)
# may belong to another broker, so the machine's Mosquitto is left alone and the command printed.
if [ "$file" = "$deployed" ] && systemctl is-active --quiet mosquitto 2>/dev/null; then
  if systemctl reload mosquitto; then
    echo "mosquitto reloaded: site $site may connect now"
  else
    echo "add-site: systemctl reload mosquitto failed: site $site is refused until Mosquitto reloads" >&2
    exit 1
  fi
else
  echo "Mosquitto reads $file only at start and on SIGHUP: site $site is refused until it reloads" \
       "(systemctl reload mosquitto, or kill -HUP the broker's pid)"
fi
