#!/usr/bin/env bash
# Makes sure Dawn (npm `webgpu`) finds a GPU adapter. If it already does, nothing happens.
# Otherwise this installs Mesa's software Vulkan driver, lavapipe, which Dawn accepts from
# Mesa 24 on. Debian 12's own Mesa is 22.3 (too old), so there it comes from bookworm-backports.
# Idempotent: run it as often as you like. Needs root (or sudo) only when it installs.
#
#   bash scripts/install-software-gpu.sh          # check, install if needed
#   bash scripts/install-software-gpu.sh --force  # install lavapipe even if an adapter is found
set -euo pipefail
cd "$(dirname "$0")/.."

has_adapter() {
  [ -f dist/cli/main.js ] || { echo "install-software-gpu: run 'npm ci' first (it builds dist/)" >&2; exit 1; }
  node bin/wgsl-vlm.js info >/dev/null 2>&1
}

if [ "${1:-}" != "--force" ] && has_adapter; then
  echo "GPU adapter found: $(node bin/wgsl-vlm.js info 2>/dev/null | head -n 1 | sed 's/^adapter *//')"
  exit 0
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "install-software-gpu: needs root to run: $*" >&2; exit 1
  fi
}

[ -r /etc/os-release ] && . /etc/os-release
case "${ID:-}:${VERSION_CODENAME:-}" in
  debian:bookworm)
    list=/etc/apt/sources.list.d/bookworm-backports.list
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deb http://deb.debian.org/debian bookworm-backports main" | as_root tee "$list" >/dev/null
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1
    ;;
  debian:*|ubuntu:*)
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
    ;;
  *)
    echo "install-software-gpu: no recipe for ${PRETTY_NAME:-this system}." >&2
    echo "Install a Vulkan driver; without a GPU, Mesa's lavapipe version 24 or newer." >&2
    exit 1
    ;;
esac

if has_adapter; then
  echo "GPU adapter found: $(node bin/wgsl-vlm.js info 2>/dev/null | head -n 1 | sed 's/^adapter *//')"
else
  echo "install-software-gpu: installed lavapipe, but Dawn still finds no adapter:" >&2
  node bin/wgsl-vlm.js info >&2 || true
  exit 1
fi
