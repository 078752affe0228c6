#!/usr/bin/env bash
# Debian packages the bulletin needs: a CJK font (charts, PDF), Pango (WeasyPrint) and HarfBuzz's
# subsetter (WeasyPrint embeds the Noto CJK fonts in ~0.05 s with it, ~12 s with its fontTools fallback).
# As root and missing: installs them. Otherwise: says exactly what to install. Idempotent and fast.
set -euo pipefail
need=()
if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list :lang=zh family 2>/dev/null | head -1)" ]; then
  need+=(fonts-noto-cjk fontconfig)
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0'; then
  need+=(libpango-1.0-0 libpangoft2-1.0-0)
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libharfbuzz-subset.so.0'; then
  need+=(libharfbuzz-subset0)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "正在安装系统依赖: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fc-cache -f >/dev/null 2>&1 || true
else
  echo "缺少系统依赖: ${need[*]}" >&2
  echo "请以 root 身份运行: apt-get install -y ${need[*]}" >&2
  exit 1
fi
