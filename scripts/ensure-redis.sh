#!/bin/sh
# Make sure redis-server (Debian's package) is there for the shared-state tests; install it with
# apt-get when it is missing (running `apt-get update` at most once), or say how when we can't.
set -eu
if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
fi
if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" != "0" ] && [ -z "$SUDO" ]; }; then
  echo ">> redis-server is missing and cannot be installed here: install Redis 6.2+ or Valkey" >&2
  echo "   (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis), then re-run." >&2
  exit 1
fi
echo ">> installing redis-server (apt-get)"
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null  # the package lists were stale or absent: once, then retry
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends redis-server >/dev/null
fi
command -v redis-server >/dev/null 2>&1 || { echo ">> redis-server did not install" >&2; exit 1; }
echo ">> $(redis-server --version)"
