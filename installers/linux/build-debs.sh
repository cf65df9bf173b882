#!/usr/bin/env bash
# Builds the Debian packages of the relay and of the streamer agent, each with its systemd unit,
# into OUT (default target/installers). The version is the workspace's one version plus the build
# number (PRODUCT_BUILD, default 0): 3.5.8 -> 3.5.8.0, the four-part version the binaries report.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/target/installers}"
here="$root/installers/linux"
base="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")"
version="$base.${PRODUCT_BUILD:-0}"
arch="$(dpkg --print-architecture)"
mkdir -p "$out"

# The relay and the streamer are built in the very cargo invocation that the technician app's
# bundler makes (build-app.sh passes them to `tauri build`, which runs `cargo build --bins --features
# tauri/custom-protocol --release`): features then unify the same way in both, and the release build
# of the dependencies they share (tokio, rustls, GTK, ...) is made once. Measured: the app's bundling
# after this build recompiles only the app crate (1.3 min instead of a 9-minute build of its own).
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bins \
  --features tauri/custom-protocol -p technician-desktop -p relay -p streamer-agent

# The shared libraries a binary links, as Debian package dependencies (what dpkg-shlibdeps, from
# dpkg-dev, reads from the installed libraries' symbols files), e.g. "libc6 (>= 2.34), ...".
shlib_depends() { # binary -> Depends
  local work
  work="$(mktemp -d)"
  mkdir -p "$work/debian"
  printf 'Source: remote-support\n\nPackage: remote-support\nArchitecture: any\n' > "$work/debian/control"
  (cd "$work" && dpkg-shlibdeps -O -e "$1" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
  rm -rf "$work"
}

stage() { # name -> a fresh staging directory
  local dir="$out/stage/$1"
  rm -rf "$dir"
  mkdir -p "$dir/DEBIAN" "$dir/usr/bin" "$dir/lib/systemd/system" "$dir/usr/share/doc/$1"
  echo "$dir"
}

# --- The relay -----------------------------------------------------------------------------------
d="$(stage remote-support-relay)"
install -m 0755 "$root/target/release/relay" "$d/usr/bin/relay"
install -m 0644 "$here/relay.service" "$d/lib/systemd/system/relay.service"
install -D -m 0640 "$here/relay.toml" "$d/etc/relay/relay.toml"
install -m 0644 "$root/README.md" "$d/usr/share/doc/remote-support-relay/README"
cat > "$d/DEBIAN/control" <<CONTROL
Package: remote-support-relay
Version: $version
Architecture: $arch
Maintainer: Remote Support release engineering <release@remote-support.invalid>
Depends: $(shlib_depends "$root/target/release/relay"), adduser
Section: net
Priority: optional
Description: Recorded remote support relay
 Authenticates technicians and streamers, pairs and forwards their sessions,
 records them when the team says so, and serves the web console.
CONTROL
echo "/etc/relay/relay.toml" > "$d/DEBIAN/conffiles"
cat > "$d/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd relay >/dev/null; then
    adduser --system --group --home /var/lib/relay --no-create-home --quiet relay
  fi
  install -d -o relay -g relay -m 0750 /var/lib/relay
  chgrp relay /etc/relay/relay.toml
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable relay.service >/dev/null
    systemctl restart relay.service
  fi
fi
SCRIPT
cat > "$d/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop relay.service || true
  if [ "$1" = remove ]; then systemctl disable relay.service >/dev/null || true; fi
fi
SCRIPT
cat > "$d/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
if [ "$1" = purge ]; then
  # Recordings are audit evidence: the data directory is kept, even on purge.
  echo "remote-support-relay: /var/lib/relay (database, recordings) is kept; remove it by hand if it is no longer needed."
fi
SCRIPT
chmod 0755 "$d/DEBIAN/postinst" "$d/DEBIAN/prerm" "$d/DEBIAN/postrm"
dpkg-deb --root-owner-group --build "$d" "$out/remote-support-relay_${version}_${arch}.deb" >/dev/null

# --- The streamer agent --------------------------------------------------------------------------
d="$(stage remote-support-streamer)"
install -m 0755 "$root/target/release/streamer-agent" "$d/usr/bin/streamer-agent"
install -m 0644 "$here/streamer-agent.service" "$d/lib/systemd/system/streamer-agent.service"
install -D -m 0600 "$here/streamer-agent.env" "$d/etc/streamer-agent/streamer-agent.env"
install -m 0644 "$root/README.md" "$d/usr/share/doc/remote-support-streamer/README"
cat > "$d/DEBIAN/control" <<CONTROL
Package: remote-support-streamer
Version: $version
Architecture: $arch
Maintainer: Remote Support release engineering <release@remote-support.invalid>
Depends: $(shlib_depends "$root/target/release/streamer-agent")
Section: net
Priority: optional
Description: Recorded remote support streamer agent
 Shares this computer's screens with a technician through the relay and takes
 their mouse and keyboard input, as a service for unattended access.
CONTROL
echo "/etc/streamer-agent/streamer-agent.env" > "$d/DEBIAN/conffiles"
cat > "$d/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  # Enabled, not started: the relay address, CA and deployment code must be set first.
  systemctl enable streamer-agent.service >/dev/null
  echo "remote-support-streamer: set the relay in /etc/streamer-agent/streamer-agent.env, then: systemctl start streamer-agent"
fi
SCRIPT
cat > "$d/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop streamer-agent.service || true
  if [ "$1" = remove ]; then systemctl disable streamer-agent.service >/dev/null || true; fi
fi
SCRIPT
cat > "$d/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
if [ "$1" = purge ]; then rm -rf /var/lib/streamer-agent; fi
SCRIPT
chmod 0755 "$d/DEBIAN/postinst" "$d/DEBIAN/prerm" "$d/DEBIAN/postrm"
dpkg-deb --root-owner-group --build "$d" "$out/remote-support-streamer_${version}_${arch}.deb" >/dev/null

rm -rf "$out/stage"
ls -1 "$out"/*.deb
