#!/usr/bin/env bash
# lab/console.sh: install the web console's pinned npm packages
# (internal/web/ui/package-lock.json), so that the tests can check that the
# committed bundle is what its sources build to. Node.js and npm come from
# Debian when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/../internal/web/ui"
if ! command -v npm >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "npm missing: the console's bundle check will skip"; exit 0; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
[ -x node_modules/.bin/esbuild ] && cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null && exit 0
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
