#!/usr/bin/env bash
# Puts Prometheus' promtool (the `prometheus` Debian package) at .deps/bin/promtool for the
# tests' `promtool check metrics`, without installing the package: installing it would
# enable a Prometheus server on this machine. Nothing to do when promtool is on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.deps/bin/promtool
if command -v promtool >/dev/null 2>&1 || [ -x "$dest" ]; then
	exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	(cd "$tmp" && apt-get download prometheus >/dev/null)
fi
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
mkdir -p "$(dirname "$dest")"
cp "$tmp/x/usr/bin/promtool" "$dest"
echo "promtool: $dest ($("$dest" --version 2>&1 | head -1))"
