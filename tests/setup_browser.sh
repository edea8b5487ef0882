#!/usr/bin/env bash
# Installs what the browser tests (pytest -m browser) need: Debian's Chromium and hls.js.
#
# Chromium comes from apt (the tests run as root on Debian); hls.js from the npm registry into a
# cache folder outside the work tree, where tests/browser/ looks for it:
#   ${RTMPD_TEST_CACHE:-$HOME/.cache/rtmpd-test}/node_modules/hls.js/dist/hls.min.js
# Both steps are skipped when already done, so calling this before every CI run is cheap.
set -euo pipefail
CACHE=${RTMPD_TEST_CACHE:-$HOME/.cache/rtmpd-test}

if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

if [ ! -f "$CACHE/node_modules/hls.js/dist/hls.min.js" ]; then
  mkdir -p "$CACHE"
  npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error 'hls.js@1' >/dev/null
fi

/usr/bin/chromium --version 2>/dev/null
echo "hls.js $(node -p "require('$CACHE/node_modules/hls.js/package.json').version")"
