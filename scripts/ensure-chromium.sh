#!/bin/sh
# Make sure Debian's chromium is installed: the dashboard's browser test drives it over CDP.
# Installs it with apt-get when missing (one `apt-get update` at most); says what to do when it cannot.
set -eu
for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done
echo ">> chromium is missing: installing Debian's chromium (needed by tests/e2e/test_dashboard_browser.py)" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "error: chromium is not installed and this user cannot run apt-get; install it with" >&2
        echo "       sudo apt-get install chromium   (then run the tests again)" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: chromium is not installed and there is no apt-get here; install chromium (or google-chrome)" >&2
    echo "       with this system's package manager, then run the tests again" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends chromium; then
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends chromium || {
        echo "error: apt-get could not install chromium; install it by hand: sudo apt-get install chromium" >&2
        exit 1
    }
fi
