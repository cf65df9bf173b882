#!/usr/bin/env bash
# Starts a throwaway Ceph cluster on 127.0.0.1 for tests: one monitor, one OSD on memstore (RAM,
# nothing on disk), one manager and the RADOS gateway (S3) on PORT, with cephx authentication
# (radosgw does not connect without it). Everything lives in DIR; stop-rgw.sh DIR ends it.
# Makes the bucket BUCKET; prints the gateway's access key and secret key, one per line.
# Usage: start-rgw.sh DIR RGW_PORT MON_PORT BUCKET
set -euo pipefail
dir="$1"; rgw_port="$2"; mon_port="$3"; bucket="$4"
mkdir -p "$dir"/{run,log,mon,osd,mgr,rgw}
conf="$dir/ceph.conf"
fsid="$(cat /proc/sys/kernel/random/uuid)"
cat > "$conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
ms bind ipv6 = false
public network = 127.0.0.0/8
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
keyring = $dir/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon data = $dir/mon
# The monitor refuses to start when the disk under its data has 5 % or less free (exit status 28,
# ENOSPC), which a shared CI disk can be while this cluster needs only some megabytes there.
mon data avail crit = 0
mon data avail warn = 0
[osd]
osd objectstore = memstore
memstore device bytes = 2147483648
osd data = $dir/osd
keyring = $dir/osd/keyring
osd max object name len = 460
osd max object namespace len = 64
[mgr]
mgr data = $dir/mgr
keyring = $dir/mgr/keyring
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
keyring = $dir/rgw/keyring
CONF
ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
  --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
ceph-mon -c "$conf" -i a
ceph() { command ceph -c "$conf" --connect-timeout 20 "$@"; }
osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
osd_secret="$(ceph-authtool --gen-print-key)"
printf '{"cephx_secret": "%s"}' "$osd_secret" > "$dir/osd-secret.json"
id="$(ceph osd new "$osd_uuid" -i "$dir/osd-secret.json")"
ceph-authtool --create-keyring "$dir/osd/keyring" --name "osd.$id" --add-key "$osd_secret" >/dev/null
ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$osd_uuid"
ceph-osd -c "$conf" -i "$id"
ceph auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
  > "$dir/mgr/keyring"
ceph-mgr -c "$conf" -i x
ceph auth get-or-create client.rgw mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
  > "$dir/rgw/keyring"
radosgw -c "$conf" -n client.rgw
# The gateway answers once its pools exist; then a user with known keys.
for _ in $(seq 1 120); do
  if curl -s -o /dev/null "http://127.0.0.1:$rgw_port/"; then break; fi
  sleep 0.5
done
curl -s -o /dev/null "http://127.0.0.1:$rgw_port/" || { echo "radosgw did not answer" >&2; exit 1; }
access="test$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
secret="$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')"
radosgw-admin -c "$conf" user create --uid=relay-tests --display-name="relay tests" \
  --access-key="$access" --secret-key="$secret" >/dev/null
# A signed S3 request (curl's SigV4; S3 wants the body's SHA-256, here the empty body's) makes
# the bucket.
curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access:$secret" -X PUT \
  -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
  "http://127.0.0.1:$rgw_port/$bucket" >/dev/null
echo "$access"
echo "$secret"
