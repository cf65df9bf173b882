#!/usr/bin/env bash
# The streamer's pipeline on Windows (the cross-built exe under Wine: GDI capture) beside Linux (X11
# capture), in one run, on one 1920x1080 virtual display showing the same Wine program:
#   tests/wine/bench-pipeline.sh [FRAMES]
# Builds streamer-agent's `pipeline` example in release for both targets, then prints a Markdown
# table (docs/PERFORMANCE.md). Needs what `cargo xtask windows` installs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
frames="${1:-120}"
cd "$root"
cargo build --release -p streamer-agent --example pipeline
cargo build --release --target x86_64-pc-windows-gnu -p streamer-agent --example pipeline

work="$(mktemp -d /tmp/bench-pipeline.XXXXXX)"
n=97
while [ -e "/tmp/.X11-unix/X$n" ]; do n=$((n + 1)); done
Xvfb ":$n" -screen 0 1920x1080x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
export DISPLAY=":$n" WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    /usr/lib/wine/wineserver -k 2>/dev/null || true
    kill "$xvfb" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
/usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1
/usr/lib/wine/wineserver -w
x86_64-w64-mingw32-gcc -municode -mwindows -O2 -o "$work/probe.exe" "$here/probe.c"
"$here/runner.sh" "$work/probe.exe" "Z:${work//\//\\}\\probe.txt" &
for _ in $(seq 100); do [ -f "$work/probe.txt" ] && break; sleep 0.2; done

echo "| platform | size | frames | fps | CPU ms/frame | capture ms | convert+encode ms | bytes/frame |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
"target/release/examples/pipeline" "$frames" "Linux: X11 GetImage"
"$here/runner.sh" "target/x86_64-pc-windows-gnu/release/examples/pipeline.exe" "$frames" \
    "Windows under Wine: GDI BitBlt"
