#!/usr/bin/env bash
# Makes sure a `chromium` browser is on PATH, for the chat page's browser test
# (test/serve_page.test.ts drives it headless through playwright-core). If one already is,
# nothing happens; otherwise this installs the distribution's `chromium` package with apt.
# Idempotent: run it as often as you like. Needs root (or sudo) only when it installs.
#
#   bash scripts/install-chromium.sh
set -euo pipefail

if command -v chromium >/dev/null; then
  echo "chromium found: $(command -v chromium)"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  [ -r /etc/os-release ] && . /etc/os-release
  echo "install-chromium: no recipe for ${PRETTY_NAME:-this system} (it has no apt-get)." >&2
  echo "Install Chromium with the system's package manager so that \`chromium\` is on PATH." >&2
  exit 1
fi

# Root runs apt-get itself; anyone else through sudo.
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-chromium: needs root (or sudo) to install the chromium package" >&2; exit 1; }
  sudo=(sudo)
fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

if command -v chromium >/dev/null; then
  echo "chromium found: $(command -v chromium)"
else
  echo "install-chromium: installed the chromium package, but no \`chromium\` is on PATH." >&2
  exit 1
fi
