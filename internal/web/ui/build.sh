#!/bin/bash
# Builds the console's bundle (../static/app.js) from src/ with the npm
# packages pinned in package-lock.json. The bundle is committed: a plain
# `go build` needs neither node nor npm. Run after changing src/ or a
# package version (make console).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; else echo "need node and npm"; exit 1; fi
fi
npm ci --no-audit --no-fund --ignore-scripts
node node_modules/esbuild/bin/esbuild --version >/dev/null 2>&1 || npm rebuild esbuild
npm run --silent build -- --outfile=../static/app.js
echo "built ../static/app.js ($(wc -c < ../static/app.js) bytes)"
