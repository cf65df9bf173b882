#!/usr/bin/env bash
# Runs a Windows executable built here under Wine: cargo's runner for x86_64-pc-windows-gnu
# (CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER), and the tests' way of starting Windows programs.
#
# - Puts the test-only bcryptprimitives.dll shim beside the exe (Wine 8 lacks it; see
#   bcryptprimitives.c), building it first if needed. It is never part of an installer.
# - Uses $WINEPREFIX when set (the caller made a fresh one for its run), else makes a fresh one
#   that is removed afterwards.
# - Uses $DISPLAY when set, else starts a 1920x1080 Xvfb for the run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exe="$1"
shift
wine=/usr/lib/wine/wine64
[ -x "$wine" ] || { echo "wine-runner: $wine missing (apt-get install wine64)" >&2; exit 127; }

# Beside the exe, and beside the package's binaries when the exe is a test in deps/ (tests start
# them through CARGO_BIN_EXE_*).
dirs=("$(dirname "$exe")")
[ "$(basename "${dirs[0]}")" = deps ] && dirs+=("$(dirname "${dirs[0]}")")
for dir in "${dirs[@]}"; do
    shim="$dir/bcryptprimitives.dll"
    if [ ! -f "$shim" ] || [ "$here/bcryptprimitives.c" -nt "$shim" ]; then
        x86_64-w64-mingw32-gcc -O2 -shared -o "$shim.tmp" "$here/bcryptprimitives.c" \
            "$here/bcryptprimitives.def" -ladvapi32
        mv "$shim.tmp" "$shim"
    fi
done

# And on Wine's DLL search path, for programs a test copies elsewhere and starts.
search=""
for dir in "${dirs[@]}"; do search+="Z:${dir//\//\\};"; done
export WINEPATH="${search}${WINEPATH:-}"

own_prefix="" own_display=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$own_prefix" ]; then
        /usr/lib/wine/wineserver -k 2>/dev/null || true
        /usr/lib/wine/wineserver -w 2>/dev/null || true
        rm -rf "$own_prefix"
    fi
    [ -z "$own_display" ] || kill "$own_display" 2>/dev/null || true
}
trap cleanup EXIT
if [ -z "${WINEPREFIX:-}" ]; then
    own_prefix="$(mktemp -d /tmp/wine-prefix.XXXXXX)"
    export WINEPREFIX="$own_prefix"
fi
if [ -z "${DISPLAY:-}" ]; then
    for n in $(seq 90 140); do
        [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ] || break
    done
    Xvfb ":$n" -screen 0 1920x1080x24 -nolisten tcp >/dev/null 2>&1 &
    own_display=$!
    export DISPLAY=":$n"
    for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$n" ] && break; sleep 0.1; done
fi
export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
status=0
"$wine" "$exe" "$@" || status=$?
# 53 is Wine's own "could not load" (c0000135): the program never started. Seen once in a fresh
# prefix of this runner ("could not load kernel32.dll") between two test programs that ran; a
# program that does start and fails exits otherwise (a Rust test harness with 101). Once more, in
# a new prefix when the prefix is this runner's; a program that cannot load at all fails again.
if [ "$status" = 53 ]; then
    echo "wine-runner: Wine could not load $exe (status 53); once more in a fresh prefix" >&2
    if [ -n "$own_prefix" ]; then
        /usr/lib/wine/wineserver -k 2>/dev/null || true
        /usr/lib/wine/wineserver -w 2>/dev/null || true
        rm -rf "$own_prefix"
        own_prefix="$(mktemp -d /tmp/wine-prefix.XXXXXX)"
        export WINEPREFIX="$own_prefix"
    fi
    status=0
    "$wine" "$exe" "$@" || status=$?
fi
exit "$status"
