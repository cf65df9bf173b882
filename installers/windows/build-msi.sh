#!/usr/bin/env bash
# Builds the streamer agent's MSI from streamer.wxs with Debian's wixl (msitools):
#   build-msi.sh EXE [OUT_DIR]
# EXE is the Windows streamer (cross-built here with mingw-w64, or the MSVC build in the release
# workflow). The MSI's version is the workspace's one version plus the build number (PRODUCT_BUILD,
# default 0), the four-part version the exe reports.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
exe_dir="$(cd "$(dirname "$1")" && pwd)"
exe_name="$(basename "$1")"
out="${2:-$root/target/installers}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
base="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")"
# MSI_VERSION overrides it (the tests build a later version to check upgrades in place).
version="${MSI_VERSION:-$base.${PRODUCT_BUILD:-0}}"
msi="$out/remote-support-streamer-$version-x64.msi"
# wixl takes file sources relative to the working directory only.
(cd "$exe_dir" && wixl --arch x64 -D "Version=$version" -D "Exe=$exe_name" -o "$msi" "$here/streamer.wxs")
echo "$msi"
