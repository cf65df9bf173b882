#!/usr/bin/env bash
# Installs the technician app's deb from DIR (default target/installers) with apt, checks what it
# installed (version, dependencies, desktop entry, icons), starts the installed app on a virtual
# display until its window is mapped, then purges it and checks nothing is left. Checks the rpm's
# metadata, digests and file list (this Debian machine cannot install it). Needs root.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-$root/target/installers}"
base="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")"
version="$base.${PRODUCT_BUILD:-0}"
title="Remote Support Technician"
fail() { echo "app smoke test: $*" >&2; exit 1; }

deb="$(ls "$dir"/Remote-Support-Technician_"$base"_*.deb)"
rpm_file="$(ls "$dir"/Remote-Support-Technician-"$base"-*.rpm)"

# --- deb -----------------------------------------------------------------------------------------
package="$(dpkg-deb -f "$deb" Package)"
[ "$(dpkg-deb -f "$deb" Version)" = "$base" ] || fail "deb version is $(dpkg-deb -f "$deb" Version), not $base"
depends="$(dpkg-deb -f "$deb" Depends)"
for d in libwebkit2gtk-4.1-0 libgtk-3-0 gstreamer1.0-libav; do
  grep -q "$d" <<<"$depends" || fail "the deb does not depend on $d (Depends: $depends)"
done
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb" >/dev/null
[ "$(technician-app --product-version)" = "$version" ] || fail "the app reports $(technician-app --product-version), not $version"
entry="/usr/share/applications/$title.desktop"
[ -f "$entry" ] || fail "no desktop entry at $entry"
desktop-file-validate "$entry" || fail "the desktop entry does not validate"
grep -qx "Exec=technician-app" "$entry" || fail "the desktop entry does not start technician-app"
ls /usr/share/icons/hicolor/*/apps/technician-app.png >/dev/null || fail "no icons installed"

# The installed app opens its window (WebKitGTK, its page) on a virtual display. The inner script is
# single-quoted on purpose: it runs under xvfb-run's display, with the window title as $0.
# shellcheck disable=SC2016
xvfb-run -a bash -c '
  technician-app >/tmp/technician-app-smoke.log 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    if xwininfo -root -tree | grep -q "\"$0\""; then kill "$pid"; wait "$pid" 2>/dev/null; exit 0; fi
    kill -0 "$pid" 2>/dev/null || { cat /tmp/technician-app-smoke.log; exit 1; }
    sleep 0.1
  done
  kill "$pid"; cat /tmp/technician-app-smoke.log; exit 1' "$title" || fail "the installed app did not open its window"
rm -f /tmp/technician-app-smoke.log

dpkg -P "$package" >/dev/null
[ ! -e /usr/bin/technician-app ] || fail "the binary is left after purge"
[ ! -e "$entry" ] || fail "the desktop entry is left after purge"

# --- rpm -----------------------------------------------------------------------------------------
rpm -K --nosignature "$rpm_file" >/dev/null || fail "the rpm's digests do not verify"
[ "$(rpm -qp --queryformat '%{VERSION}' "$rpm_file" 2>/dev/null)" = "$base" ] || fail "rpm version"
# Listed into variables first: under pipefail, `rpm ... | grep -q` fails whenever grep stops reading
# before rpm has written everything (SIGPIPE), which made this check flaky.
rpm_files="$(rpm -qpl "$rpm_file" 2>/dev/null)"
rpm_requires="$(rpm -qpR "$rpm_file" 2>/dev/null)"
grep -qx /usr/bin/technician-app <<<"$rpm_files" || fail "the rpm has no /usr/bin/technician-app"
grep -q "libwebkit2gtk-4.1.so" <<<"$rpm_requires" || fail "the rpm does not require WebKitGTK 4.1"

echo "app smoke test: $package $base (product version $version) installs, opens its window and uninstalls cleanly; the rpm checks out"
