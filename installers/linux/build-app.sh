#!/usr/bin/env bash
# Builds the technician app's Linux packages (deb and rpm) with the Tauri bundler, from a release
# build, into OUT (default target/installers). The bundler comes from installers/tools (npm ci).
# AppImage is not built: its bundler downloads tools from GitHub at build time.
# Windows (MSI, NSIS) and macOS (DMG) installers are built by the workflow in
# .github/workflows/installers.yml on those systems, with the same configuration.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/target/installers}"
tools="$root/installers/tools"
mkdir -p "$out"

[ -x "$tools/node_modules/.bin/tauri" ] || npm ci --prefix "$tools" --no-audit --no-fund
config="$(mktemp --suffix=.json)"
trap 'rm -f "$config"' EXIT
node "$tools/tauri-config.mjs" linux > "$config"

bundle="$root/target/release/bundle"
rm -rf "$bundle/deb" "$bundle/rpm"
# `-- -p ...`: the same cargo invocation as build-debs.sh, so that the two share one release build.
(cd "$root/technician-app/desktop" && "$tools/node_modules/.bin/tauri" build --ci --bundles deb,rpm --config "$config" \
  -- -p technician-desktop -p relay -p streamer-agent)
for f in "$bundle"/deb/*.deb "$bundle"/rpm/*.rpm; do
  # The bundler names files after the product name, with spaces; packages keep their own names.
  cp "$f" "$out/$(basename "$f" | tr ' ' '-')"
done
ls -1 "$out"/Remote-Support-Technician*
