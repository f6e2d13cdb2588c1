#!/usr/bin/env bash
# Prepares this machine for the test suite: system packages, a PulseAudio daemon and a null sink.
#
# Idempotent: on a machine that already has everything it does no apt work and starts nothing.
# As root it installs what is missing; otherwise it prints the apt-get line and fails.
set -euo pipefail

PACKAGES=(pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 ffmpeg xvfb espeak-ng sox)
SINK_NAME="${XTTS_TEST_SINK:-xtts_test_sink}"

log() { printf 'setup_test_env: %s\n' "$*" >&2; }

missing_packages() {
    local package
    for package in "${PACKAGES[@]}"; do
        # dpkg -s succeeds for removed-but-configured packages too: check the status line.
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
            printf '%s\n' "$package"
        fi
    done
}

install_packages() {
    local -a missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    local install_line="apt-get install -y --no-install-recommends ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        log "missing system packages: ${missing[*]}"
        log "run as root: apt-get update && $install_line"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only when there are none (a fresh container) or the
    # install fails on stale ones.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        log "apt-get update (no package lists yet)"
        apt-get update -q </dev/null
    fi
    log "$install_line"
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null; then
        log "install failed; refreshing package lists and retrying"
        apt-get update -q </dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    fi
}

wait_for_pulse() {
    # Bounded retry: up to about 10 s, returning as soon as the daemon answers.
    local attempt
    for attempt in $(seq 1 100); do
        if pactl info >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start_pulse() {
    if pactl info >/dev/null 2>&1; then
        return 0
    fi
    log "starting PulseAudio"
    # As root PulseAudio warns that system mode is recommended, then runs as asked.
    # -D returns once the daemon is up; an already running daemon makes it fail harmlessly.
    pulseaudio -D --exit-idle-time=-1 --system=false --disallow-exit </dev/null >/dev/null 2>&1 \
        || log "pulseaudio -D returned non-zero (maybe already running); waiting for it"
    if ! wait_for_pulse; then
        log "PulseAudio did not answer 'pactl info' within 10 s"
        exit 1
    fi
}

ensure_null_sink() {
    if ! pactl list short sinks | awk '{print $2}' | grep -qx "$SINK_NAME"; then
        log "loading module-null-sink sink_name=$SINK_NAME"
        pactl load-module module-null-sink "sink_name=$SINK_NAME" \
            "sink_properties=device.description=XTTS_test_sink" >/dev/null
    fi
    if [[ $(pactl get-default-sink 2>/dev/null || true) != "$SINK_NAME" ]]; then
        pactl set-default-sink "$SINK_NAME"
    fi
}

install_packages
start_pulse
ensure_null_sink
log "ready: PulseAudio default sink is $(pactl get-default-sink)"
