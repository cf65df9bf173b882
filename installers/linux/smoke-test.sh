#!/usr/bin/env bash
# Installs the Debian packages from DIR (default target/installers), checks their systemd units with
# systemd-analyze verify, starts the installed binaries (versions; the relay on its installed
# configuration as its own user), then removes and purges them and checks what is left. Needs root.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-$root/target/installers}"
base="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")"
version="$base.${PRODUCT_BUILD:-0}"
fail() { echo "smoke test: $*" >&2; exit 1; }

relay_deb="$(ls "$dir"/remote-support-relay_"$version"_*.deb)"
streamer_deb="$(ls "$dir"/remote-support-streamer_"$version"_*.deb)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$relay_deb" "$streamer_deb" >/dev/null

# Units.
systemd-analyze verify /lib/systemd/system/relay.service /lib/systemd/system/streamer-agent.service \
  || fail "a systemd unit does not verify"

# Each package depends on the package of every shared library its binary links (GTK for the
# streamer's attended window, libstdc++ for OpenH264, ALSA), so a plain apt install runs it.
for pair in "$relay_deb:/usr/bin/relay" "$streamer_deb:/usr/bin/streamer-agent"; do
  deb="${pair%%:*}" bin="${pair#*:}"
  depends="$(dpkg-deb -f "$deb" Depends)"
  names=" $(sed 's/ ([^)]*)//g; s/[,|]/ /g' <<<"$depends") "
  for lib in $(objdump -p "$bin" | awk '/NEEDED/ {print $2}'); do
    # sed reads to the end (no SIGPIPE for dpkg under pipefail, as `head` would cause).
    pkg="$(dpkg -S "*/$lib" 2>/dev/null | sed -n '1s/:.*//p')"
    [ -n "$pkg" ] || fail "$bin links $lib, which no installed package holds"
    [[ "$names" == *" $pkg "* ]] || fail "$deb does not depend on $pkg ($lib); Depends: $depends"
  done
done

# Versions.
[ "$(relay --product-version)" = "$version" ] || fail "relay reports $(relay --product-version), not $version"
[ "$(streamer-agent --product-version)" = "$version" ] || fail "streamer-agent reports another version"
[ "$(dpkg-query -W -f='${Version}' remote-support-relay)" = "$version" ] || fail "package version"

# The relay starts on its installed configuration, as its user, and makes its data directory.
getent passwd relay >/dev/null || fail "no relay user"
log="$(mktemp)"
runuser -u relay -- relay --config /etc/relay/relay.toml --listen 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  [ -f /var/lib/relay/first-owner.txt ] && break
  sleep 0.1
done
kill -TERM "$pid"; wait "$pid" || true
[ -f /var/lib/relay/first-owner.txt ] || { cat "$log"; fail "the relay did not start"; }
[ "$(stat -c %U /var/lib/relay/first-owner.txt)" = relay ] || fail "relay data not owned by relay"
rm -f "$log"

# Removal keeps configuration until purge; purge keeps the relay's data (recordings are evidence).
dpkg -r remote-support-relay remote-support-streamer >/dev/null
if [ -e /usr/bin/relay ] || [ -e /usr/bin/streamer-agent ]; then fail "binaries left after remove"; fi
[ ! -e /lib/systemd/system/relay.service ] || fail "unit left after remove"
[ -f /etc/relay/relay.toml ] || fail "configuration removed before purge"
dpkg -P remote-support-relay remote-support-streamer >/dev/null
if [ -e /etc/relay/relay.toml ] || [ -e /etc/streamer-agent/streamer-agent.env ]; then
  fail "configuration left after purge"
fi
[ -d /var/lib/relay ] || fail "purge removed the relay's data"
rm -rf /var/lib/relay
echo "smoke test: $version installs, verifies, starts, reports its version and uninstalls cleanly"
