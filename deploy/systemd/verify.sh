#!/usr/bin/env bash
# Static check of prefix-router.service: `systemd-analyze verify` (syntax, directives) on a copy
# whose binary path points at an existing executable (verify insists the binary exists), then
# the offline security exposure score (fails above 2.0, "OK" is below 4). Skips with a notice
# when systemd-analyze is not installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "NOTICE: systemd-analyze not installed: prefix-router.service not verified"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/router#$(command -v true)#g" "$here/prefix-router.service" \
  >"$tmp/prefix-router.service"
systemd-analyze verify "$tmp/prefix-router.service"
exposure="$(systemd-analyze security --offline=yes --no-pager "$tmp/prefix-router.service" \
  | sed -n 's/.*Overall exposure level for prefix-router.service: \([0-9.]*\).*/\1/p')"
echo "prefix-router.service: verify ok, exposure ${exposure:-?}"
awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'
