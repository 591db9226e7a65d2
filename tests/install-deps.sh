#!/usr/bin/env bash
# tests/install-deps.sh — installs the Debian packages gg builds and tests
# with (idempotent; uses sudo when not root).
set -eu
pkgs="build-essential clang libjansson-dev libxxhash-dev libopenblas-dev libpcre2-dev libutf8proc-dev libopenmpi-dev openmpi-bin libmicrohttpd-dev curl"
# chromium drives ggserve's chat page in its end-to-end test.
pkgs="$pkgs chromium"
# node + npm fetch the reference tokenizers / Jinja used by the parity tests.
command -v npm >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
