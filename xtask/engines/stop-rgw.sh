#!/usr/bin/env bash
# Stops the cluster start-rgw.sh made in DIR and removes DIR.
set -uo pipefail
dir="$1"
for pidfile in "$dir"/run/*.pid; do
  [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
pkill -f -- "-c $dir/ceph.conf" 2>/dev/null
sleep 1
pkill -9 -f -- "-c $dir/ceph.conf" 2>/dev/null
rm -rf "$dir"
