#!/usr/bin/env bash
# Docker 26 (Debian 13's docker.io 26.1.5, API 1.45) and containerd 1.7 for
# tests that need the containerd image store (the store Docker 29 uses by
# default), unpacked beside the system's Debian 12 packages, never installed:
#
#   tests/bed/docker26.sh DIR      fetch (once) and unpack into DIR; prints DIR/bin
#
# DIR/bin then holds dockerd, containerd, containerd-shim-runc-v2 and ctr of
# Debian 13 (the system's runc is used: Debian 13's needs glibc 2.38). Put it
# first on dockerd's PATH and give dockerd a --config-file with
# {"features": {"containerd-snapshotter": true}}.
#
# The packages come from the same mirror as the system's Debian source, suite
# trixie, signed by the Debian archive keyring, with apt state of their own
# under DIR/apt (the system's apt lists and cache are left untouched). A DIR
# that already holds DIR/bin/dockerd is reused as it is.
set -euo pipefail

dir=${1:?usage: docker26.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
if [ -x "$dir/bin/dockerd" ] && [ -x "$dir/bin/containerd" ]; then
	echo "$dir/bin"
	exit 0
fi

# The mirror the system uses for Debian (deb822 or one-line sources).
mirror=$(
	{
		grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ print $2 }'
		grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{ print $2 }'
	} | grep -m1 -E '/debian/?$' || true
)
mirror=${mirror:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || {
	echo "docker26.sh: $keyring missing (apt-get install debian-archive-keyring)" >&2
	exit 1
}

apt="$dir/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$dir/root"
printf 'deb [signed-by=%s] %s trixie main\n' "$keyring" "$mirror" >"$apt/sources.list"
opts=(
	-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=-
	-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
	-o APT::Get::List-Cleanup=0 -o DPkg::Lock::Timeout=300 -q
)
apt-get "${opts[@]}" update >"$apt/update.log" 2>&1 || {
	tail -n 20 "$apt/update.log" >&2
	echo "docker26.sh: apt-get update of trixie from $mirror failed" >&2
	exit 1
}
(cd "$apt/debs" && apt-get "${opts[@]}" download docker.io/trixie containerd/trixie) >"$apt/download.log" 2>&1 || {
	tail -n 20 "$apt/download.log" >&2
	echo "docker26.sh: apt-get download docker.io/trixie containerd/trixie failed" >&2
	exit 1
}
for deb in "$apt"/debs/*.deb; do
	dpkg-deb -x "$deb" "$dir/root"
done
mkdir -p "$dir/bin"
for b in dockerd docker-proxy containerd containerd-shim-runc-v2 ctr; do
	for p in "$dir/root/usr/sbin/$b" "$dir/root/usr/bin/$b"; do
		if [ -x "$p" ]; then
			ln -sf "$p" "$dir/bin/$b"
			break
		fi
	done
done
[ -x "$dir/bin/dockerd" ] && [ -x "$dir/bin/containerd" ] || {
	echo "docker26.sh: the packages did not hold dockerd and containerd (see $dir/root)" >&2
	exit 1
}
# Only the binaries are needed; the .debs and apt lists can go.
rm -rf "$apt"
"$dir/bin/dockerd" --version >&2
echo "$dir/bin"
