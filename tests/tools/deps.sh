#!/bin/sh
# Install the Debian packages that building, testing and running agentd need.
# As root it installs what is missing and says what; otherwise it prints the
# command to run.
set -eu

PKGS="make gcc clang libclang-rt-14-dev pkg-config libuv1-dev libcurl4-openssl-dev zlib1g-dev
libjansson-dev libinih-dev libdeflate-dev check valgrind cppcheck clang-format
postgresql python3 python3-fastapi python3-uvicorn python3-asyncpg python3-pytest
python3-httpx nodejs systemd procps iproute2 curl openssl"
[ -n "${DEPS_EXTRA:-}" ] && PKGS="$PKGS $DEPS_EXTRA"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# nodejs may come from elsewhere than Debian: a node on PATH will do.
case "$missing" in *nodejs*) command -v node >/dev/null 2>&1 && missing=$(echo "$missing" | sed 's/ nodejs//') ;; esac

if [ -z "$missing" ]; then
	echo "deps: all packages present"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing:$missing" >&2
	echo "deps: run as root: apt-get install -y$missing" >&2
	exit 1
fi
echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: installed:$missing"
