#!/usr/bin/env bash
# lab/chromium.sh: install Debian's Chromium for the web console's browser
# test (internal/e2e TestConsole, driven with chromedp). Does nothing when
# it is already there.
set -euo pipefail
command -v chromium >/dev/null && exit 0
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null
