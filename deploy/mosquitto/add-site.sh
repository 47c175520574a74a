#!/usr/bin/env bash
# Adds (or resets) a canteen's broker credentials: username = site id, so the ACL's patterns
# confine it to kitchen/<site>/. Prints the password once.
# With --room, the monitoring room's account instead (monitor-1, monitor-2...: one per kitchen-monitor
# instance), which reads every site: the ACL gives those rights to a `user <name>` block.
# Usage: deploy/mosquitto/add-site.sh SITE_ID [PASSWD_FILE]
#        deploy/mosquitto/add-site.sh --room monitor-N [PASSWD_FILE]
set -euo pipefail
usage="usage: add-site.sh SITE_ID [PASSWD_FILE] | add-site.sh --room monitor-N [PASSWD_FILE]"
room=false
if [ "${1:-}" = "--room" ]; then
  room=true
  shift
fi
name="${1:?$usage}"
deployed=/etc/mosquitto/kitchen/passwd
file="${2:-$deployed}"
[[ "$name" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || { echo "add-site: '$name' is not a site id" >&2; exit 2; }
# monitor and monitor-* are the room's accounts (read everything, write decisions and replay
# requests): a canteen given one would read every other canteen's alerts. Made with --room only.
if $room; then
  [[ "$name" =~ ^monitor(-[A-Za-z0-9_-]+)?$ ]] ||
    { echo "add-site: the room's accounts are named monitor-1, monitor-2...: not '$name'" >&2; exit 2; }
elif [[ "$name" =~ ^monitor(-.*)?$ ]]; then
  echo "add-site: '$name' is a name of the monitoring room's accounts, not a site id (for the room:" \
       "add-site.sh --room $name)" >&2
  exit 2
fi
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
# The broker's own folder (deploy/README.md, "The central broker"); any other file's folder is the
# caller's to make.
if [ "$file" = "$deployed" ]; then
  install -d -m 0755 "$(dirname "$deployed")"
fi
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
mosquitto_passwd -b "$file" "$name" "$password"
if $room; then
  echo "room account $name: username $name password $password (put it in the kitchen-monitor" \
       "instance's mqtt.username and, as KGM_MQTT_PASSWORD, its mqtt.password)"
  # Without its block in the ACL the account reads nothing of the sites.
  acl="$(dirname "$file")/acl"
  if [ -f "$acl" ] && ! grep -qx "user $name" "$acl"; then
    echo "add-site: $acl has no 'user $name' block: add one (copy monitor-1's), or $name reads no site" >&2
  fi
else
  echo "site $name: username $name password $password (put it in the gateway's KG_MQTT_PASSWORD)"
fi
# Mosquitto reads password_file only at start and on SIGHUP: until then the new account is refused.
# The broker's own file is reloaded here when its Debian service runs; any other file (a trial's, a
# test's) may belong to another broker, so the machine's Mosquitto is left alone and the command
# printed.
if [ "$file" = "$deployed" ] && systemctl is-active --quiet mosquitto 2>/dev/null; then
  if systemctl reload mosquitto; then
    echo "mosquitto reloaded: $name may connect now"
  else
    echo "add-site: systemctl reload mosquitto failed: $name is refused until Mosquitto reloads" >&2
    exit 1
  fi
else
  echo "Mosquitto reads $file only at start and on SIGHUP: $name is refused until it reloads" \
       "(systemctl reload mosquitto, or kill -HUP the broker's pid)"
fi
