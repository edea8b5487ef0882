#!/usr/bin/env bash
# Installs the servers the scale-out tests run rtmpd beside, from Debian: PostgreSQL (a
# throwaway cluster per test, made with initdb), HAProxy (send-proxy-v2 in front of rtmpd),
# nginx (the caching edge) and its RTMP module (nginx-rtmp as a push target).
#
# The tests start each server themselves on loopback in temp folders; nothing is enabled or
# started here. Skipped when everything is there already, so calling it before every run is
# cheap.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
ls /usr/lib/nginx/modules/ngx_rtmp_module.so >/dev/null 2>&1 || missing+=(libnginx-mod-rtmp)

if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "$(ls -d /usr/lib/postgresql/*/bin | head -1)/postgres: $("$(ls -d /usr/lib/postgresql/*/bin | head -1)/postgres" --version)"
/usr/sbin/haproxy -v | head -1
/usr/sbin/nginx -v 2>&1
