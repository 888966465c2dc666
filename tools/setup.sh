#!/usr/bin/env bash
# Installs what Keel's build and tests need on a Debian machine (run as root). Idempotent.
set -euo pipefail
packages=(pkg-config libcrypt-dev liblmdb-dev libzstd-dev lmdb-utils golang-go golang-github-coreos-bbolt-dev golang-etcd-server-dev etcd-server etcd-client fio curl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
