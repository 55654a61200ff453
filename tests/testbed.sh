#!/usr/bin/env bash
# Real test bed for dockwatch: three Docker Engine daemons (20.10 on a unix
# socket, 20.10 over mutual TLS, 26.1 on the containerd image store), Podman
# and two registries, all on this machine, only on 127.0.0.1 / unix sockets,
# seeded with known content.
#
#   tests/testbed.sh install     install the Debian packages the bed needs (if missing)
#   tests/testbed.sh up DIR      install, generate certs, start + seed everything,
#                                write DIR/env (plain KEY=VALUE lines)
#   tests/testbed.sh registry-restart DIR
#                                start the plain registry again (same port, storage,
#                                config) after a test killed it (SIGKILL) or froze it
#                                (SIGSTOP: it is SIGCONT+SIGKILLed first), wait until
#                                it answers, update REGISTRY_PID in DIR/env
#   tests/testbed.sh down DIR    stop everything started by `up DIR`, unmount, rm DIR
#
# What `up` starts (all processes in their own session, logs under DIR):
#   dockerd A      unix://DIR/a/docker.sock only
#   dockerd B      tcp://127.0.0.1:PORT_B only, mutual TLS (--tlsverify)
#   dockerd C      unix://DIR/c/docker.sock only: Debian 13's Docker 26.1 (API 1.45)
#                  with its containerd 1.7, unpacked into TRIXIE_CACHE (below), on
#                  the containerd image store ("containerd-snapshotter": true in
#                  its daemon.json; storage driver overlayfs); the system's runc
#   registry       docker-registry (distribution 2.8) on 127.0.0.1:PORT_R, plain HTTP
#   registry-auth  docker-registry on 127.0.0.1:PORT_RA, plain HTTP, htpasswd (bcrypt)
#                  basic auth: user dwuser, random password in DIR/registry-auth.pass
#                  (mode 600, no trailing newline)
#   podman         `podman system service --time=0 unix://DIR/podman/podman.sock`
#                  (Debian's podman 4.3.1, rootful, Docker-compatible API 1.41), with
#                  its own storage, config, locks, events, policy and registries.conf,
#                  all under DIR/podman (nothing is written to /etc/containers; only
#                  podman's blob info cache goes to /var/lib/containers/cache, see
#                  podman_setup); both registries are listed as insecure (plain HTTP).
#                  DIR/podman/podman is a podman CLI wrapper on the same storage.
# Seeds:
#   A: tagged dwtest/app:1 dwtest/app:2 dwtest/tool:1 ci/builder:1 ci/runner:1
#      ci/runner:2 (6 distinct images; dwtest/tool:1 and ci/builder:1 carry the
#      label dwtest.group=cache), 3 dangling images; containers (all --network
#      none): 2 running, 2 exited (codes 0 and 3), 1 created.
#   B: tagged dwtest/app:1 remote/only:1, 2 dangling; 1 running + 1 exited (0).
#   C: the same as A (images and containers, names dwtest-c-*).
#   podman: tagged dwtest/app:1 dwtest/tool:1 (imported through the Docker API,
#      so podman names them docker.io/dwtest/app:1 ...), 1 dangling; containers
#      (--network none): 1 running, 1 exited (0).
#   registry: REGISTRY/dwtest/multi:1, 3 layers (600 kB, 300 kB, 100 kB);
#             REGISTRY/dwtest/multi:2, FROM multi:1 plus 1 layer (200 kB), so a
#             pull of :2 after :1 shows 3 "Already exists" and 1 download;
#             REGISTRY/dwtest/big:1, 4 layers of 16 MiB random (~64 MiB, incompressible);
#             REGISTRY/dwtest/mixed:1, 3 layers of 3 MiB, 100 kB and 2 MiB random (the
#             containerd store tells a layer's bytes only once 1 MiB of it is in).
#   registry-auth: REGISTRY_AUTH/private/app:1, 2 layers (50 kB, 20 kB).
#   All registry images are built on A and removed from A again: A and B hold
#   exactly the seeds above. Every layer size in the registries' manifests
#   (compressed, manifest order) is in DIR/env as IMAGE_*_LAYERS=N,N,...
#
# Knobs (environment): TESTBED_STORAGE_DRIVER (default overlay2; empty = let
# dockerd choose), TESTBED_DOCKER_CLI (default /usr/bin/docker, the 20.10 CLI
# that ships with docker.io), TESTBED_TIMEOUT (readiness timeout, default 60 s),
# TESTBED_TRIXIE_CACHE (where Debian 13's Docker is unpacked, default
# /var/cache/dockwatch-testbed/trixie), TESTBED_DEBIAN_MIRROR (the Debian
# mirror to fetch it from; default: the one the system's apt sources name).
#
# Debian 13's Docker (daemon C): `install` (and so `up`) fetches the trixie
# packages docker.io, containerd and docker-cli with apt-get download, through
# an apt configuration of its own under TRIXIE_CACHE/apt (its own sources list
# naming the system's Debian mirror with suite trixie, signed-by the Debian
# archive keyring; its own lists and cache folders: the system's apt state is
# untouched, nothing is installed), and unpacks them with dpkg-deb -x into
# TRIXIE_CACHE/root. Once there it is reused by every later `up` (delete the
# folder to fetch again). Its usr/bin and usr/sbin go first on C's PATH, so
# dockerd starts Debian 13's containerd and shim; Debian 13's runc needs glibc
# 2.38 and is not fetched: C uses the system's runc (and docker-init).
# TRIXIE_CACHE/root/usr/bin/docker is Docker 26's own CLI (DOCKER_C_CLI).
set -euo pipefail

# apache2-utils: htpasswd (bcrypt) for the auth registry. chromium: headless
# browser tests of the landing page (chromium --headless --no-sandbox ...).
# podman: the third engine (Docker-compatible API). With --no-install-recommends
# it brings conmon, golang-github-containers-common and containernetworking-
# plugins and uses the runc of docker.io; rootful with kernel overlay and
# --network none it needs nothing else here (no crun, fuse-overlayfs,
# slirp4netns, uidmap or catatonit). haproxy: Debian's 2.6 runs
# deploy/socket-proxy/haproxy.cfg in tests/proxy.rs (its service is not
# started: policy-rc.d below).
PACKAGES=(docker.io docker-registry prometheus busybox-static openssl curl apache2-utils chromium podman wrk systemd nginx haproxy)
MARKER=.dockwatch-testbed
TIMEOUT=${TESTBED_TIMEOUT:-60}
STORAGE_DRIVER=${TESTBED_STORAGE_DRIVER-overlay2}

log() { printf '[testbed] %s\n' "$*" >&2; }
die() {
	{
		echo "=================================================================="
		echo "TESTBED FAILURE: $*"
		echo "=================================================================="
	} >&2
	exit 1
}

# ---------------------------------------------------------------- packages
pkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		pkg_installed "$p" || missing+=("$p")
	done
	command -v python3 >/dev/null 2>&1 || missing+=(python3)
	((${#missing[@]} == 0)) && return 0
	[ "$(id -u)" = 0 ] || die "packages missing (${missing[*]}) and not root: install them with apt-get as root"
	log "installing missing packages: ${missing[*]}"
	# The packages' maintainer scripts would try to start system services
	# (dockerd on /var/run/docker.sock, a registry on :5000, prometheus on
	# :9090). Deny that with a policy-rc.d unless the machine already has one.
	local guard=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		guard=1
	fi
	local rc=0
	{
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q &&
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
				--no-install-recommends "${missing[@]}"
	} >&2 || rc=$?
	[ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
	((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc); see the apt output above"
	for p in "${PACKAGES[@]}"; do
		pkg_installed "$p" || die "package $p still not installed after apt-get"
	done
}

# ---------------------------------------------------------------- Debian 13's Docker
TRIXIE_CACHE=${TESTBED_TRIXIE_CACHE:-/var/cache/dockwatch-testbed/trixie}
TRIXIE_ROOT=$TRIXIE_CACHE/root
TRIXIE_PACKAGES=(docker.io containerd docker-cli)
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# The URI of the Debian archive the system's apt sources use for its own
# release (deb822 .sources files and one-line lists alike; the security
# archive and other vendors' sources are skipped). Empty if there is none.
debian_mirror() {
	local codename
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	python3 - "$codename" /etc/apt/sources.list /etc/apt/sources.list.d/* <<'EOF'
import re, sys
codename, files = sys.argv[1], sys.argv[2:]
def ok(uri, suites, components):
    return (codename in suites and "main" in components
            and "security" not in uri and uri.startswith(("http://", "https://")))
for f in files:
    try:
        text = open(f).read()
    except OSError:
        continue
    if f.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            fields, key = {}, None
            for line in stanza.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0] in " \t" and key:
                    fields[key] += " " + line.strip()
                elif ":" in line:
                    key, value = line.split(":", 1)
                    key = key.strip().lower()
                    fields[key] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                if ok(uri, fields.get("suites", "").split(), fields.get("components", "").split()):
                    print(uri.rstrip("/"))
                    sys.exit(0)
    elif f.endswith(".list"):
        for line in text.splitlines():
            line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(line) >= 4 and line[0] == "deb" and ok(line[1], [line[2]], line[3:]):
                print(line[1].rstrip("/"))
                sys.exit(0)
EOF
}

trixie_failure() { # WHAT LOG
	{
		echo "=================================================================="
		echo "TESTBED FAILURE: Debian 13's Docker for dockerd C: $1"
		[ -z "${2:-}" ] || { echo "--- last 30 lines of $2 ---"; tail -n 30 "$2" 2>/dev/null; }
		echo "--- how to fix ---"
		echo "- the Debian mirror must be reachable: it is $mirror (from the system's apt"
		echo "  sources; set TESTBED_DEBIAN_MIRROR=http://deb.debian.org/debian to pick another)"
		echo "- 'NO_PUBKEY' or 'not signed': $DEBIAN_KEYRING must hold the trixie keys:"
		echo "  apt-get update && apt-get install debian-archive-keyring (bookworm's 2023.3+deb12u1 has them)"
		echo "- 'Unable to locate package' / 'Can't select candidate version': trixie no longer"
		echo "  carries ${TRIXIE_PACKAGES[*]} under these names; pick them with"
		echo "  apt-cache -o Dir::Etc::sourcelist=$TRIXIE_CACHE/apt/sources.list ... policy docker.io"
		echo "- a binary that does not run: it needs a newer glibc than this machine has"
		echo "  (objdump -T FILE | grep GLIBC_); only runc is known to, and it is not fetched"
		echo "- to start over: rm -rf $TRIXIE_CACHE"
		echo "=================================================================="
	} >&2
	exit 1
}

# Fetches and unpacks Debian 13's docker.io, containerd and docker-cli into
# TRIXIE_ROOT, once: a complete unpack (TRIXIE_ROOT/.complete) is reused. Two
# beds coming up at once take turns on a lock; the unpack is made aside and
# renamed into place, so a half-made one is never used. The .deb files and
# apt's lists are removed again afterwards (TRIXIE_ROOT is all that is kept).
install_trixie() {
	[ -f "$TRIXIE_ROOT/.complete" ] && return 0
	[ "$(id -u)" = 0 ] || die "Debian 13's Docker is not unpacked in $TRIXIE_ROOT yet and we are not root: run tests/testbed.sh install as root"
	local c=$TRIXIE_CACHE mirror=${TESTBED_DEBIAN_MIRROR:-}
	mkdir -p "$c"
	exec 9>"$c/.lock"
	flock -w 900 9 || die "could not lock $c/.lock within 15 minutes (another bed is stuck fetching Debian 13's Docker?)"
	if [ -f "$TRIXIE_ROOT/.complete" ]; then
		exec 9>&-
		return 0
	fi
	local t0=$SECONDS
	[ -n "$mirror" ] || mirror=$(debian_mirror)
	[ -n "$mirror" ] || trixie_failure "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/*"
	[ -r "$DEBIAN_KEYRING" ] || trixie_failure "$DEBIAN_KEYRING is missing (apt-get install debian-archive-keyring)"
	log "fetching Debian 13's ${TRIXIE_PACKAGES[*]} from $mirror into $c (once; later beds reuse it)"
	local apt="$c/apt" tmp="$c/root.tmp.$$"
	rm -rf "$apt" "$c"/root.tmp.*
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$tmp"
	printf 'deb [signed-by=%s] %s trixie main\n' "$DEBIAN_KEYRING" "$mirror" >"$apt/sources.list"
	local o=(-q -o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=-
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
		-o APT::Sandbox::User=root -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false)
	apt-get "${o[@]}" update >"$apt/update.log" 2>&1 || trixie_failure "apt-get update of the trixie sources failed" "$apt/update.log"
	# apt-get update exits 0 on a signature it cannot check; its warnings say so
	! grep -qE 'NO_PUBKEY|not signed|is not signed|EXPKEYSIG' "$apt/update.log" ||
		trixie_failure "the trixie Release file could not be verified" "$apt/update.log"
	local pkgs=() p
	for p in "${TRIXIE_PACKAGES[@]}"; do pkgs+=("$p/trixie"); done
	(cd "$apt/debs" && apt-get "${o[@]}" download "${pkgs[@]}") >"$apt/download.log" 2>&1 ||
		trixie_failure "apt-get download ${pkgs[*]} failed" "$apt/download.log"
	local deb versions=()
	for deb in "$apt/debs"/*.deb; do
		dpkg-deb -x "$deb" "$tmp" || trixie_failure "dpkg-deb -x $deb failed"
		versions+=("$(dpkg-deb -f "$deb" Package)=$(dpkg-deb -f "$deb" Version)")
	done
	# docker.io's docker-init is a link to tini-static, which is not fetched:
	# without the dangling link dockerd finds the system's docker-init.
	[ -e "$tmp/usr/bin/docker-init" ] || rm -f "$tmp/usr/bin/docker-init"
	local bin flag
	for bin in usr/sbin/dockerd:--version usr/bin/containerd:--version usr/bin/containerd-shim-runc-v2:-v usr/bin/docker:--version; do
		flag=${bin#*:} bin=${bin%%:*}
		[ -x "$tmp/$bin" ] || trixie_failure "$bin is not in the unpacked packages (${versions[*]})"
		"$tmp/$bin" "$flag" >"$apt/version.log" 2>&1 || trixie_failure "$bin does not run on this machine" "$apt/version.log"
	done
	printf '%s\n' "${versions[@]}" >"$tmp/.complete"
	rm -rf "$TRIXIE_ROOT"
	mv "$tmp" "$TRIXIE_ROOT"
	rm -rf "$apt"
	exec 9>&-
	log "Debian 13's Docker unpacked in $TRIXIE_ROOT in $((SECONDS - t0))s: ${versions[*]}"
}

# ---------------------------------------------------------------- the Debian package test
# tests/package.rs builds dockwatch's .deb with cargo-deb (installed once per
# machine into ~/.cargo/bin with `cargo install --locked`), checks it with
# lintian, renders its man page with man, and installs it into throwaway
# copies (overlay mounts) of a clean Debian 12 minbase root that debootstrap
# makes once into BOOKWORM_ROOT (TESTBED_BOOKWORM_CACHE, default
# /var/cache/dockwatch-testbed/bookworm; delete the folder to make it again).
PACKAGES+=(debootstrap lintian man-db binutils)
CARGO_DEB_VERSION=3.8.0
BOOKWORM_CACHE=${TESTBED_BOOKWORM_CACHE:-/var/cache/dockwatch-testbed/bookworm}
BOOKWORM_ROOT=$BOOKWORM_CACHE/root

install_cargo_deb() {
	local have
	have=$(cargo deb --version 2>/dev/null) || have=
	[ -z "$have" ] || return 0
	command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain with rustup (cargo-deb is installed with it)"
	log "installing cargo-deb $CARGO_DEB_VERSION into ~/.cargo/bin (once per machine, about 2 minutes)"
	cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2 ||
		die "cargo install cargo-deb --locked --version $CARGO_DEB_VERSION failed (crates.io must be reachable); see above"
	cargo deb --version >/dev/null 2>&1 || die "cargo deb does not run after cargo install cargo-deb (is ~/.cargo/bin on PATH?)"
}

# debootstrap --variant=minbase bookworm into BOOKWORM_ROOT, once, from the
# system's Debian mirror; made aside and renamed into place, under a lock, as
# install_trixie does. The downloaded .deb files are dropped afterwards.
install_bookworm() {
	[ -f "$BOOKWORM_ROOT/.complete" ] && return 0
	[ "$(id -u)" = 0 ] || die "no Debian 12 root in $BOOKWORM_ROOT yet and we are not root: run tests/testbed.sh install as root"
	local c=$BOOKWORM_CACHE mirror=${TESTBED_DEBIAN_MIRROR:-}
	mkdir -p "$c"
	exec 9>"$c/.lock"
	flock -w 900 9 || die "could not lock $c/.lock within 15 minutes (another run stuck in debootstrap?)"
	if [ -f "$BOOKWORM_ROOT/.complete" ]; then
		exec 9>&-
		return 0
	fi
	local t0=$SECONDS tmp="$c/root.tmp.$$"
	[ -n "$mirror" ] || mirror=$(debian_mirror)
	[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list(.d) for the Debian 12 root: set TESTBED_DEBIAN_MIRROR=http://deb.debian.org/debian"
	[ -r "$DEBIAN_KEYRING" ] || die "$DEBIAN_KEYRING is missing (apt-get install debian-archive-keyring)"
	log "debootstrap --variant=minbase bookworm from $mirror into $c (once; later runs reuse it)"
	rm -rf "$c"/root.tmp.*
	debootstrap --variant=minbase --keyring="$DEBIAN_KEYRING" bookworm "$tmp" "$mirror" >"$c/debootstrap.log" 2>&1 || {
		tail -n 30 "$c/debootstrap.log" >&2
		rm -rf "$tmp"
		die "debootstrap of Debian 12 from $mirror failed (log above, whole in $c/debootstrap.log); the mirror must be reachable (TESTBED_DEBIAN_MIRROR picks another); to start over: rm -rf $c"
	}
	rm -f "$tmp"/var/cache/apt/archives/*.deb
	[ -x "$tmp/usr/bin/dpkg" ] && [ -x "$tmp/usr/sbin/useradd" ] || die "the debootstrapped root $tmp has no dpkg or useradd"
	printf 'bookworm minbase from %s\n' "$mirror" >"$tmp/.complete"
	rm -rf "$BOOKWORM_ROOT"
	mv "$tmp" "$BOOKWORM_ROOT"
	exec 9>&-
	log "Debian 12 root made in $BOOKWORM_ROOT in $((SECONDS - t0))s ($(du -sh "$BOOKWORM_ROOT" | cut -f1))"
}

# ---------------------------------------------------------------- helpers
free_ports() { # N -> N distinct free TCP ports on 127.0.0.1, space separated
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

pick_cli() {
	local c=${TESTBED_DOCKER_CLI:-}
	if [ -z "$c" ]; then
		if [ -x /usr/bin/docker ]; then c=/usr/bin/docker; else c=$(command -v docker || true); fi
	fi
	if [ -z "$c" ] || [ ! -x "$c" ]; then
		die "no docker CLI found (docker.io should provide /usr/bin/docker)"
	fi
	printf '%s\n' "$c"
}

# docker CLI against A / B (TB, PORT_B, DOCKER_CLI set by `up`)
dk_a() { "$DOCKER_CLI" -H "unix://$TB/a/docker.sock" "$@"; }
dk_b() {
	"$DOCKER_CLI" -H "tcp://127.0.0.1:$PORT_B" --tlsverify --tlscacert "$TB/certs/ca.pem" \
		--tlscert "$TB/certs/cert.pem" --tlskey "$TB/certs/key.pem" "$@"
}

ping_a() { [ "$(curl -sS --max-time 3 --unix-socket "$TB/a/docker.sock" http://localhost/_ping 2>/dev/null)" = OK ]; }
# daemon C, with Docker 26's own CLI
DOCKER_C_CLI=$TRIXIE_ROOT/usr/bin/docker
dk_c() { "$DOCKER_C_CLI" -H "unix://$TB/c/docker.sock" "$@"; }
ping_c() { [ "$(curl -sS --max-time 3 --unix-socket "$TB/c/docker.sock" http://localhost/_ping 2>/dev/null)" = OK ]; }
ping_b() {
	[ "$(curl -sS --max-time 3 --cacert "$TB/certs/ca.pem" --cert "$TB/certs/cert.pem" \
		--key "$TB/certs/key.pem" "https://127.0.0.1:$PORT_B/_ping" 2>/dev/null)" = OK ]
}
ping_r() { [ "$(curl -sS --max-time 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_R/v2/" 2>/dev/null)" = 200 ]; }
# curl with the auth registry's credentials (from a config on stdin, not argv)
RA_USER=dwuser
curl_ra() { printf 'user = "%s:%s"\n' "$RA_USER" "$RA_PASS" | curl -K - "$@"; }
# 200 only with the right credentials: proves the htpasswd file works too
ping_ra() { [ "$(curl_ra -sS --max-time 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_RA/v2/" 2>/dev/null)" = 200 ]; }

ping_p() { [ "$(curl -sS --max-time 3 --unix-socket "$TB/podman/podman.sock" http://d/_ping 2>/dev/null)" = OK ]; }
# docker CLI against podman's Docker-compatible API
dk_p() { "$DOCKER_CLI" -H "unix://$TB/podman/podman.sock" "$@"; }

# wait_ready PID CHECK: 0 ready, 1 timeout, 2 process exited
wait_ready() {
	local pid=$1 check=$2 deadline=$((SECONDS + TIMEOUT))
	while ((SECONDS < deadline)); do
		"$check" && return 0
		kill -0 "$pid" 2>/dev/null || { "$check" && return 0; return 2; }
		sleep 0.2
	done
	"$check" && return 0
	return 1
}

start_failure() { # NAME LOGFILE CMDFILE HINT
	{
		echo "=================================================================="
		echo "TESTBED FAILURE: $1 did not answer within ${TIMEOUT}s, or it exited."
		echo "--- last 40 lines of $2 ---"
		tail -n 40 "$2" 2>/dev/null || echo "(no log)"
		echo "--- command line (in $3) ---"
		cat "$3" 2>/dev/null || true
		echo "--- how to fix ---"
		printf '%s\n' "$4"
		echo "Run the command line above by hand in the foreground to see it fail live;"
		echo "tear the half-started bed down with: tests/testbed.sh down $TB"
		echo "=================================================================="
	} >&2
	exit 1
}

DOCKERD_HINT='- must run as root; cgroups must be mounted under /sys/fs/cgroup
- "driver not supported" / overlay errors: set TESTBED_STORAGE_DRIVER=vfs (or
  TESTBED_STORAGE_DRIVER= to let dockerd choose) and rerun
- "address already in use": another process took the port; just rerun (fresh ports)
- missing binaries: apt-get install docker.io (dockerd, containerd, runc)'

# unmount everything at or below PATH, deepest first, lazily if busy
unmount_under() {
	local m p
	for _ in 1 2 3; do
		m=$(awk -v d="$1" '{ p = $5; gsub(/\\040/, " ", p); if (p == d || index(p, d "/") == 1) print p }' /proc/self/mountinfo | sort -r)
		[ -n "$m" ] || return 0
		while IFS= read -r p; do
			umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true
		done <<<"$m"
	done
	return 0
}

# ---------------------------------------------------------------- certs
gen_certs() { # DIR
	local d=$1
	mkdir -p "$d"
	cat >"$d/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = dockwatch-testbed
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
	local o=(openssl)
	key() { "${o[@]}" genrsa -out "$1" 2048 2>/dev/null; }
	ca() { # CAKEY CAPEM CN
		"${o[@]}" req -x509 -new -config "$d/openssl.cnf" -extensions ca_ext -key "$1" \
			-subj "/CN=$3" -days 3650 -sha256 -out "$2"
	}
	leaf() { # KEY OUT CN EXT CAPEM CAKEY
		"${o[@]}" req -new -config "$d/openssl.cnf" -key "$1" -subj "/CN=$3" -out "$2.csr"
		"${o[@]}" x509 -req -in "$2.csr" -CA "$5" -CAkey "$6" -set_serial "0x$(openssl rand -hex 12)" \
			-days 825 -sha256 -extfile "$d/openssl.cnf" -extensions "$4" -out "$2" 2>/dev/null
		rm -f "$2.csr"
	}
	(
		cd "$d"
		key ca-key.pem & key server-key.pem & key key.pem &
		key wrong-ca-key.pem & key wrong-key.pem &
		wait
		ca ca-key.pem ca.pem "dockwatch test CA"
		ca wrong-ca-key.pem wrong-ca.pem "dockwatch WRONG test CA"
		leaf server-key.pem server-cert.pem localhost server_ext ca.pem ca-key.pem
		leaf key.pem cert.pem dockwatch-client client_ext ca.pem ca-key.pem
		leaf wrong-key.pem wrong-cert.pem dockwatch-wrong-client client_ext wrong-ca.pem wrong-ca-key.pem
		chmod 600 ./*key.pem
		openssl verify -CAfile ca.pem server-cert.pem cert.pem >/dev/null
		openssl verify -CAfile wrong-ca.pem wrong-cert.pem >/dev/null
	) || die "certificate generation with openssl failed"
}

# ---------------------------------------------------------------- daemons
# DOCKERD_JSON_EXTRA (more daemon.json members) and DOCKERD_BIN (a folder put
# first on dockerd's PATH, whose usr/sbin/dockerd is started) are read if set.
start_dockerd() { # SUBDIR DRIVER EXTRA_ARGS... ; sets START_PID
	local d=$1 driver=$2 run=(dockerd)
	shift 2
	mkdir -p "$d/data" "$d/exec"
	# own daemon.json: isolates from /etc/docker/daemon.json, and moves the
	# trust key (daemon ID) off the shared /etc/docker/key.json, so A and B
	# report distinct IDs and the host's /etc/docker is left untouched.
	printf '{"deprecated-key-path": "%s/key.json"%s}\n' "$d" "${DOCKERD_JSON_EXTRA:+, $DOCKERD_JSON_EXTRA}" >"$d/daemon.json"
	if [ -n "${DOCKERD_BIN:-}" ]; then
		run=(env "PATH=$DOCKERD_BIN/usr/bin:$DOCKERD_BIN/usr/sbin:$PATH" "$DOCKERD_BIN/usr/sbin/dockerd")
	fi
	local args=(
		--data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid"
		--config-file "$d/daemon.json"
		--bridge=none --iptables=false --ip-masq=false
	)
	[ -z "$driver" ] || args+=(--storage-driver "$driver")
	args+=("$@")
	printf '%q ' "${run[@]}" "${args[@]}" >"$d/dockerd.cmd"
	echo >>"$d/dockerd.cmd"
	setsid "${run[@]}" "${args[@]}" </dev/null >>"$d/dockerd.log" 2>&1 &
	START_PID=$!
}

DOCKERD_C_HINT="- tests/testbed.sh install fetches Debian 13's Docker into $TRIXIE_ROOT; if it
  is damaged: rm -rf $TRIXIE_CACHE and rerun
- 'containerd ... not found' or a shim error: $TRIXIE_ROOT/usr/bin must hold
  containerd and containerd-shim-runc-v2; runc (and docker-init) come from the system
  (apt-get install docker.io)
- 'GLIBC_2.xx not found': a Debian 13 binary needs a newer glibc than this machine has
- must run as root; cgroups must be mounted under /sys/fs/cgroup"

# Daemon C: Debian 13's dockerd 26.1 on the containerd image store, its own
# managed containerd 1.7 (started by dockerd from TRIXIE_ROOT, with state under
# DIR/c/data/containerd and DIR/c/exec/containerd). The storage driver is the
# containerd snapshotter's (overlayfs): no --storage-driver. Sets C_PID.
bring_up_c() {
	local d="$TB/c" rc=0
	DOCKERD_BIN=$TRIXIE_ROOT DOCKERD_JSON_EXTRA='"features": {"containerd-snapshotter": true}' \
		start_dockerd "$d" "" -H "unix://$d/docker.sock"
	wait_ready "$START_PID" ping_c || rc=$?
	((rc == 0)) || start_failure "dockerd C (Debian 13's Docker 26)" "$d/dockerd.log" "$d/dockerd.cmd" "$DOCKERD_C_HINT"
	grep -q 'containerd-snapshotter=true' "$d/dockerd.log" ||
		start_failure "dockerd C on the containerd image store" "$d/dockerd.log" "$d/dockerd.cmd" \
			"- its log must say containerd-snapshotter=true: check the features in $d/daemon.json"
	echo "$START_PID" >"$d/pid"
}

# start A or B, wait for /_ping, fall back to dockerd's own storage driver choice
# if the requested one does not work here. Sets the pid in A_PID / B_PID.
bring_up_dockerd() { # a|b
	local side=$1 d="$TB/$1" check=ping_$1 extra=() rc=0
	if [ "$side" = a ]; then
		extra=(-H "unix://$d/docker.sock")
	else
		extra=(-H "tcp://127.0.0.1:$PORT_B" --tlsverify --tlscacert "$TB/certs/ca.pem"
			--tlscert "$TB/certs/server-cert.pem" --tlskey "$TB/certs/server-key.pem")
	fi
	start_dockerd "$d" "$STORAGE_DRIVER" "${extra[@]}"
	wait_ready "$START_PID" "$check" || rc=$?
	if ((rc == 2)) && [ -n "$STORAGE_DRIVER" ] &&
		grep -qiE 'storage.driver|graphdriver|driver not supported|overlay' "$d/dockerd.log"; then
		log "dockerd $side: storage driver $STORAGE_DRIVER failed here; retrying with dockerd's own choice"
		echo "----- retry without --storage-driver -----" >>"$d/dockerd.log"
		unmount_under "$d/data"
		unmount_under "$d/exec"
		rm -rf --one-file-system "$d/data" "$d/exec"
		start_dockerd "$d" "" "${extra[@]}"
		rc=0
		wait_ready "$START_PID" "$check" || rc=$?
	fi
	((rc == 0)) || start_failure "dockerd $side" "$d/dockerd.log" "$d/dockerd.cmd" "$DOCKERD_HINT"
	echo "$START_PID" >"$d/pid"
}

# write_registry_config DIR PORT [HTPASSWD_FILE]: DIR/config.yml, storage in DIR/data
#
# Basic auth over plain HTTP works here, no TLS needed (checked with
# docker-registry 2.8.2 and dockerd 20.10.24): the registry's htpasswd access
# controller serves `Www-Authenticate: Basic realm=...` and accepts bcrypt
# credentials on a plain-HTTP listener without complaint, and dockerd treats
# 127.0.0.0/8 registries as insecure: it tries HTTPS first, logs "server gave
# HTTP response to HTTPS client", falls back to HTTP and sends the credentials
# there (docker login, push and pull with X-Registry-Auth all work). So the
# auth registry has no certificate, and dockerd A needs no registry CA (that
# would have meant /etc/docker/certs.d/HOST:PORT/ca.crt, shared by every
# dockerd on the machine).
write_registry_config() {
	local d=$1 port=$2 htpasswd=${3:-}
	mkdir -p "$d/data"
	cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
	if [ -n "$htpasswd" ]; then
		cat >>"$d/config.yml" <<EOF
auth:
  htpasswd:
    realm: dockwatch-testbed
    path: $htpasswd
EOF
	fi
}

# launch_registry DIR: docker-registry serve DIR/config.yml in its own session,
# log appended to DIR/registry.log, command line in DIR/registry.cmd, pid in
# DIR/pid and START_PID.
launch_registry() {
	local d=$1
	printf '%q ' docker-registry serve "$d/config.yml" >"$d/registry.cmd"
	setsid docker-registry serve "$d/config.yml" </dev/null >>"$d/registry.log" 2>&1 &
	START_PID=$!
	echo "$START_PID" >"$d/pid"
}

start_registry() {
	write_registry_config "$TB/registry" "$PORT_R"
	launch_registry "$TB/registry"
	REGISTRY_PID=$START_PID
}

# The auth registry: user dwuser, a fresh random password (base64url, 24
# chars) in $TB/registry-auth.pass (mode 600, no trailing newline), bcrypt
# htpasswd made with apache2-utils' htpasswd (password on stdin, not argv).
start_registry_auth() {
	local d="$TB/registry-auth"
	mkdir -p "$d"
	RA_PASS=$(openssl rand -base64 18 | tr '+/' '-_')
	(
		umask 077
		printf '%s' "$RA_PASS" >"$TB/registry-auth.pass"
	)
	chmod 600 "$TB/registry-auth.pass"
	printf '%s\n' "$RA_PASS" | htpasswd -niB "$RA_USER" >"$d/htpasswd"
	write_registry_config "$d" "$PORT_RA" "$d/htpasswd"
	launch_registry "$d"
	REGISTRY_AUTH_PID=$START_PID
}

# ---------------------------------------------------------------- podman
# shellcheck disable=SC2016 # backquotes for the reader, not for expansion
PODMAN_HINT='- apt-get install podman (4.3.1: conmon, containers-common; runc comes with docker.io)
- the command runs with CONTAINERS_CONF, CONTAINERS_STORAGE_CONF,
  CONTAINERS_REGISTRIES_CONF and HOME set to the files under DIR/podman
  (see DIR/podman/service.cmd); DIR/podman/podman runs the CLI the same way:
  try `DIR/podman/podman info`
- "error setting rlimit ... operation not permitted" on a container start: this
  machine gives root no CAP_SYS_RESOURCE; default_ulimits in containers.conf
  must stay within the hard limits podman itself runs with'

# podman_setup: the config files, the CLI wrapper and the command line of the
# service, all under $TB/podman:
#   storage.conf     graphroot $TB/podman/root, runroot $TB/podman/run (overlay)
#   containers.conf  cgroupfs (PID 1 is no systemd), runc, file locks (not the
#                    machine-wide /dev/shm/libpod_lock, whose locks a fresh
#                    podman would free for every other rootful podman), events
#                    to a file (what GET /events reads), tmp dir, network config
#                    dir, image_copy_tmp_dir (podman also makes it its TMPDIR:
#                    every import through the Docker API leaves its upload there
#                    as api_load.tar*, never removed), default_ulimits (below)
#   registries.conf  REGISTRY and REGISTRY_AUTH insecure, no search registries
#   home/.config/containers/policy.json   (HOME of the service and the wrapper)
# Left on the host: podman 4.3 (containers/image 5.23) keeps its blob info
# cache (digest -> compressed digest, known registry locations) for root in
# /var/lib/containers/cache/blob-info-cache-v1.boltdb whatever the graphroot,
# and creates it on the first import or pull; there is no knob for it. `down`
# removes that directory again when it holds nothing else and no podman
# process runs on the machine any more (another bed's podman shares it).
# runc keeps a container's state in /run/runc/ID while it exists (podman has
# no way to pass runc --root); `down` removes leftovers.
# The conmon cgroups are /libpod_parent/conmon and /libpod_parent/libpod-ID
# under every controller (shared by every rootful podman of the machine).
podman_setup() {
	local d="$TB/podman" nofile nproc
	mkdir -p "$d/root" "$d/run" "$d/tmp" "$d/networks" "$d/home/.config/containers"
	cat >"$d/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$d/root"
runroot = "$d/run"
EOF
	# Root here has no CAP_SYS_RESOURCE: podman's default rlimits for a
	# container (nofile 1048576, nproc 4194304) make runc fail with "error
	# setting rlimit type 7: operation not permitted". podman itself runs with
	# nofile = our hard limit and nproc = min(our hard limit, 32768).
	nofile=$(ulimit -Hn)
	nproc=$(ulimit -Hu)
	[[ $nofile =~ ^[0-9]+$ ]] && ((nofile <= 1048576)) || nofile=1048576
	[[ $nproc =~ ^[0-9]+$ ]] && ((nproc <= 32768)) || nproc=32768
	cat >"$d/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
lock_type = "file"
tmp_dir = "$d/tmp"
image_copy_tmp_dir = "$d/tmp"
events_logger = "file"
events_logfile_path = "$d/events.log"

[network]
network_config_dir = "$d/networks"
EOF
	cat >"$d/registries.conf" <<EOF
unqualified-search-registries = []

[[registry]]
location = "127.0.0.1:$PORT_R"
insecure = true

[[registry]]
location = "127.0.0.1:$PORT_RA"
insecure = true
EOF
	printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$d/home/.config/containers/policy.json"
	PODMAN_ENV=(CONTAINERS_CONF="$d/containers.conf" CONTAINERS_STORAGE_CONF="$d/storage.conf"
		CONTAINERS_REGISTRIES_CONF="$d/registries.conf" HOME="$d/home")
	{
		echo '#!/bin/sh'
		echo "# podman CLI on the storage and config of the podman service of the test bed $TB"
		printf 'exec env'
		printf ' %q' "${PODMAN_ENV[@]}"
		echo ' podman "$@"'
	} >"$d/podman"
	chmod 755 "$d/podman"
}

start_podman() { # sets PODMAN_PID
	local d="$TB/podman"
	podman_setup
	local args=(podman --log-level=info system service --time=0 "unix://$d/podman.sock")
	printf '%q ' env "${PODMAN_ENV[@]}" "${args[@]}" >"$d/service.cmd"
	echo >>"$d/service.cmd"
	setsid env "${PODMAN_ENV[@]}" "${args[@]}" </dev/null >>"$d/service.log" 2>&1 &
	PODMAN_PID=$!
	echo "$PODMAN_PID" >"$d/pid"
}

# ---------------------------------------------------------------- seeds
# import_image DK_FUNC ROOTFS REF|'' [--change ...]...
# Every image gets a file with unique content, so every image id is distinct.
import_image() {
	local dk=$1 rootfs=$2 ref=$3
	shift 3
	printf 'dockwatch seed %s %s %s\n' "${ref:-dangling}" "$(date +%s%N)" "$RANDOM$RANDOM" >"$rootfs/etc/dwtest-seed"
	local changes=(--change 'CMD ["/bin/busybox","sleep","3600"]' "$@")
	if [ -n "$ref" ]; then
		tar -C "$rootfs" -cf - . | "$dk" import "${changes[@]}" - "$ref" >/dev/null
	else
		tar -C "$rootfs" -cf - . | "$dk" import "${changes[@]}" - >/dev/null
	fi
}

make_rootfs() { # DIR
	mkdir -p "$1/bin" "$1/etc" "$1/tmp"
	cp /bin/busybox "$1/bin/busybox"
	ln -sf busybox "$1/bin/sh"
}

expect_count() { # WHAT EXPECTED ACTUAL
	[ "$2" = "$3" ] || die "seed check failed: $1: expected $2, found $3"
}

# seed_like_a a|c: the seeds of A (see the top of this file), on A or C
seed_like_a() {
	local x=$1 dk=dk_$1 r="$TB/seed/$1-rootfs" cache=(--change 'LABEL dwtest.group=cache')
	make_rootfs "$r"
	import_image "$dk" "$r" dwtest/app:1
	import_image "$dk" "$r" dwtest/app:2
	import_image "$dk" "$r" dwtest/tool:1 "${cache[@]}"
	import_image "$dk" "$r" ci/builder:1 "${cache[@]}"
	import_image "$dk" "$r" ci/runner:1
	import_image "$dk" "$r" ci/runner:2
	import_image "$dk" "$r" ""
	import_image "$dk" "$r" ""
	import_image "$dk" "$r" ""

	"$dk" run -d --network none --name "dwtest-$x-running-1" dwtest/app:1 >/dev/null
	"$dk" run -d --network none --name "dwtest-$x-running-2" dwtest/tool:1 >/dev/null
	"$dk" run --network none --name "dwtest-$x-exited-0" dwtest/app:2 /bin/busybox true
	local rc=0
	"$dk" run --network none --name "dwtest-$x-exited-3" ci/runner:1 /bin/busybox sh -c 'exit 3' || rc=$?
	expect_count "exit code of dwtest-$x-exited-3" 3 "$rc"
	"$dk" create --network none --name "dwtest-$x-created" ci/runner:2 >/dev/null
}

seed_a() { seed_like_a a; }
seed_c() { seed_like_a c; }

# Registry seeds: built on A (legacy builder, no network), pushed, and removed
# from A again (`rmi` of a tag also removes the builder's intermediate images
# under it, so nothing dangling stays; check_seeds counts `images -a`).
# multi:1 and multi:2 and private/app:1 share one small build context; big:1
# and mixed:1 have their own, so their bytes are sent to dockerd once. Sets
# nothing: the layer sizes are read back from the registries afterwards.
seed_registries() {
	local ctx="$TB/seed/reg" bigctx="$TB/seed/big" mixctx="$TB/seed/mixed" i
	local m1="127.0.0.1:$PORT_R/dwtest/multi:1" m2="127.0.0.1:$PORT_R/dwtest/multi:2"
	local big="127.0.0.1:$PORT_R/dwtest/big:1" priv="127.0.0.1:$PORT_RA/private/app:1"
	local mixed="127.0.0.1:$PORT_R/dwtest/mixed:1"
	mkdir -p "$ctx" "$bigctx" "$mixctx"
	head -c 600000 /dev/urandom >"$ctx/layer1.bin"
	head -c 300000 /dev/urandom >"$ctx/layer2.bin"
	head -c 100000 /dev/urandom >"$ctx/layer3.bin"
	head -c 200000 /dev/urandom >"$ctx/layer4.bin"
	head -c 50000 /dev/urandom >"$ctx/private1.bin"
	head -c 20000 /dev/urandom >"$ctx/private2.bin"
	printf 'FROM scratch\nCOPY layer1.bin /layer1.bin\nCOPY layer2.bin /layer2.bin\nCOPY layer3.bin /layer3.bin\n' >"$ctx/Dockerfile"
	printf 'FROM %s\nCOPY layer4.bin /layer4.bin\n' "$m1" >"$ctx/Dockerfile.multi2"
	printf 'FROM scratch\nCOPY private1.bin /app/private1.bin\nCOPY private2.bin /app/private2.bin\n' >"$ctx/Dockerfile.private"
	printf 'FROM scratch\n' >"$bigctx/Dockerfile"
	for i in 1 2 3 4; do
		head -c $((16 << 20)) /dev/urandom >"$bigctx/layer$i.bin"
		printf 'COPY layer%s.bin /layer%s.bin\n' "$i" "$i" >>"$bigctx/Dockerfile"
	done
	head -c $((3 << 20)) /dev/urandom >"$mixctx/big1.bin"
	head -c 100000 /dev/urandom >"$mixctx/small.bin"
	head -c $((2 << 20)) /dev/urandom >"$mixctx/big2.bin"
	printf 'FROM scratch\nCOPY big1.bin /big1.bin\nCOPY small.bin /small.bin\nCOPY big2.bin /big2.bin\n' >"$mixctx/Dockerfile"
	build() { DOCKER_BUILDKIT=0 dk_a build --network none -q "$@" >/dev/null; }

	# big:1 (build + gzip on push take the longest) beside the small ones
	(
		build -t "$big" "$bigctx"
		rm -rf "$bigctx" # 64 MiB no longer needed
		dk_a push "$big" >/dev/null
	) &
	local bigjob=$!

	build -t "$m1" "$ctx"
	build -t "$m2" -f "$ctx/Dockerfile.multi2" "$ctx"
	build -t "$priv" -f "$ctx/Dockerfile.private" "$ctx"
	build -t "$mixed" "$mixctx"
	dk_a push "$m1" >/dev/null
	dk_a push "$mixed" >/dev/null
	dk_a push "$m2" >/dev/null # after :1, so its 3 shared layers exist already
	# log in with a throw-away client config: nothing lands in ~/.docker or
	# in the bed's own CLI config ($TB/cli); logged out again afterwards
	local cfg="$TB/dockercfg"
	mkdir -p "$cfg"
	printf '%s' "$RA_PASS" | DOCKER_CONFIG=$cfg dk_a login -u "$RA_USER" --password-stdin "127.0.0.1:$PORT_RA" >/dev/null
	DOCKER_CONFIG=$cfg dk_a push "$priv" >/dev/null
	DOCKER_CONFIG=$cfg dk_a logout "127.0.0.1:$PORT_RA" >/dev/null

	wait "$bigjob"
	# children before parents: multi:2 is built on multi:1
	dk_a rmi "$m2" "$m1" "$big" "$priv" "$mixed" >/dev/null
}

seed_b() {
	local r="$TB/seed/b-rootfs"
	make_rootfs "$r"
	import_image dk_b "$r" dwtest/app:1
	import_image dk_b "$r" remote/only:1
	import_image dk_b "$r" ""
	import_image dk_b "$r" ""
	dk_b run -d --network none --name dwtest-b-running-1 remote/only:1 >/dev/null
	dk_b run --network none --name dwtest-b-exited-0 dwtest/app:1 /bin/busybox true
}

seed_podman() {
	local r="$TB/seed/p-rootfs"
	make_rootfs "$r"
	import_image dk_p "$r" dwtest/app:1
	import_image dk_p "$r" dwtest/tool:1
	import_image dk_p "$r" ""
	dk_p run -d --network none --name dwtest-p-running-1 dwtest/app:1 >/dev/null
	dk_p run --network none --name dwtest-p-exited-0 dwtest/tool:1 /bin/busybox true
}

check_seeds() {
	local n x X
	for x in a c; do
		X=${x^^}
		n=$("dk_$x" images -a -q | wc -l)
		expect_count "$X: all images" 9 "$n"
		n=$("dk_$x" images -q --filter dangling=true | wc -l)
		expect_count "$X: dangling images" 3 "$n"
		n=$("dk_$x" images -q --filter label=dwtest.group=cache | wc -l)
		expect_count "$X: images labelled dwtest.group=cache" 2 "$n"
		n=$("dk_$x" ps -a -q | wc -l)
		expect_count "$X: containers" 5 "$n"
		n=$("dk_$x" ps -q --filter status=running | wc -l)
		expect_count "$X: running containers" 2 "$n"
	done
	n=$(dk_c info --format '{{.Driver}} {{.ServerVersion}}')
	[[ $n == "overlayfs 26.1."* ]] || die "seed check failed: C: expected storage driver overlayfs and Docker 26.1.x, found $n"
	n=$(dk_b images -a -q | wc -l)
	expect_count "B: all images" 4 "$n"
	n=$(dk_b images -q --filter dangling=true | wc -l)
	expect_count "B: dangling images" 2 "$n"
	n=$(dk_b ps -a -q | wc -l)
	expect_count "B: containers" 2 "$n"
	n=$(dk_p images -a -q | wc -l)
	expect_count "podman: all images" 3 "$n"
	n=$(dk_p images -q --filter dangling=true | wc -l)
	expect_count "podman: dangling images" 1 "$n"
	n=$(dk_p ps -a -q | wc -l)
	expect_count "podman: containers" 2 "$n"
	n=$(dk_p ps -q --filter status=running | wc -l)
	expect_count "podman: running containers" 1 "$n"
	n=$(curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		"http://127.0.0.1:$PORT_R/v2/dwtest/multi/manifests/1" |
		python3 -c 'import json,sys; print(len(json.load(sys.stdin)["layers"]))')
	expect_count "registry: layers of dwtest/multi:1" 3 "$n"

	IMAGE_MULTI1_LAYERS=$(manifest_layers "127.0.0.1:$PORT_R" dwtest/multi 1)
	IMAGE_MULTI2_LAYERS=$(manifest_layers "127.0.0.1:$PORT_R" dwtest/multi 2)
	IMAGE_BIG_LAYERS=$(manifest_layers "127.0.0.1:$PORT_R" dwtest/big 1)
	IMAGE_MIXED_LAYERS=$(manifest_layers "127.0.0.1:$PORT_R" dwtest/mixed 1)
	IMAGE_PRIVATE_LAYERS=$(manifest_layers "127.0.0.1:$PORT_RA" private/app 1 auth)
	expect_count "registry: layer sizes of dwtest/multi:1 (3)" 3 "$(commas "$IMAGE_MULTI1_LAYERS")"
	expect_count "registry: layer sizes of dwtest/multi:2 (4)" 4 "$(commas "$IMAGE_MULTI2_LAYERS")"
	expect_count "registry: dwtest/multi:2 starts with the layers of :1" "$IMAGE_MULTI1_LAYERS" \
		"$(cut -d, -f1-3 <<<"$IMAGE_MULTI2_LAYERS")"
	expect_count "registry: layer sizes of dwtest/big:1 (4)" 4 "$(commas "$IMAGE_BIG_LAYERS")"
	expect_count "registry: layer sizes of dwtest/mixed:1 (3)" 3 "$(commas "$IMAGE_MIXED_LAYERS")"
	local mixed_sizes
	IFS=, read -ra mixed_sizes <<<"$IMAGE_MIXED_LAYERS"
	((mixed_sizes[0] > 1 << 20 && mixed_sizes[1] < 1 << 20 && mixed_sizes[2] > 1 << 20)) ||
		die "seed check failed: dwtest/mixed:1 should have layers over, under and over 1 MiB: $IMAGE_MIXED_LAYERS"
	local size
	for size in ${IMAGE_BIG_LAYERS//,/ }; do
		((size > 16 << 20)) || die "seed check failed: a layer of dwtest/big:1 is only $size bytes (random data should not compress)"
	done
	expect_count "registry-auth: layer sizes of private/app:1 (2)" 2 "$(commas "$IMAGE_PRIVATE_LAYERS")"
	n=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_RA/v2/private/app/manifests/1")
	expect_count "registry-auth: HTTP status without credentials" 401 "$n"
}

commas() { awk -F, '{ print NF }' <<<"$1"; }

# manifest_layers HOST:PORT REPO TAG [auth]: the compressed layer sizes from
# the registry's schema 2 manifest, comma separated, in manifest order
manifest_layers() {
	local get=(curl)
	[ "${4:-}" != auth ] || get=(curl_ra)
	"${get[@]}" -fsS --max-time 10 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		"http://$1/v2/$2/manifests/$3" | python3 -c '
import json, sys
m = json.load(sys.stdin)
assert m.get("mediaType") == "application/vnd.docker.distribution.manifest.v2+json", m.get("mediaType")
print(",".join(str(l["size"]) for l in m["layers"]))'
}

# Waits for the seeding job PID; if it failed, shows the end of its LOG and
# dies saying seeding WHAT failed.
wait_seeded() { # PID LOG WHAT
	wait "$1" || {
		tail -n 30 "$2" >&2
		die "seeding $3 failed (log: $2)"
	}
}

# ---------------------------------------------------------------- up
cmd_up() {
	local dir=$1 t0=$SECONDS
	# any unexpected failure (set -e) must be loud, also inside subshells
	set -E
	trap 'die "unexpected failure (exit $?) in ${FUNCNAME[0]:-main} at line $LINENO: $BASH_COMMAND"' ERR
	install_packages
	install_trixie
	if [ -e "$dir/$MARKER" ]; then
		log "$dir holds an old test bed: tearing it down first"
		(
			trap - ERR
			cmd_down "$dir"
		)
	fi
	mkdir -p "$dir"
	[ -z "$(ls -A "$dir")" ] || die "$dir exists and is not empty (and is no test bed): pass a new or empty DIR"
	TB=$(cd "$dir" && pwd -P)
	touch "$TB/$MARKER"
	mkdir -p "$TB/a" "$TB/b" "$TB/c" "$TB/registry" "$TB/seed" "$TB/cli" "$TB/podman"
	# keep the CLI away from ~/.docker (contexts, credentials, hints)
	export DOCKER_CONFIG="$TB/cli" DOCKER_CLI_HINTS=false
	unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT
	DOCKER_CLI=$(pick_cli)
	local ports
	ports=$(free_ports 3)
	read -r PORT_B PORT_R PORT_RA <<<"$ports"

	# podman needs nothing else and is ready in ~0.1 s: start it first and
	# seed it while the rest comes up (exit 90: the service never answered)
	start_podman
	(
		wait_ready "$PODMAN_PID" ping_p || exit 90
		seed_podman
	) >"$TB/podman/seed.log" 2>&1 &
	local podpid=$!
	gen_certs "$TB/certs"

	start_registry
	start_registry_auth
	# B and C are brought up in the background while A comes up in the foreground.
	(bring_up_dockerd b 2>"$TB/b/start.err") &
	local bpid=$!
	(bring_up_c 2>"$TB/c/start.err") &
	local cpid=$!
	bring_up_dockerd a
	wait "$bpid" || {
		cat "$TB/b/start.err" >&2
		exit 1
	}
	cat "$TB/b/start.err" >&2
	wait "$cpid" || {
		cat "$TB/c/start.err" >&2
		exit 1
	}
	cat "$TB/c/start.err" >&2
	DOCKERD_A_PID=$(cat "$TB/a/pid")
	DOCKERD_B_PID=$(cat "$TB/b/pid")
	DOCKERD_C_PID=$(cat "$TB/c/pid")
	local rc=0
	wait_ready "$REGISTRY_PID" ping_r || rc=$?
	((rc == 0)) || start_failure "docker-registry" "$TB/registry/registry.log" "$TB/registry/registry.cmd" \
		"- apt-get install docker-registry; the port is fresh, so 'address in use' means a race: rerun"
	wait_ready "$REGISTRY_AUTH_PID" ping_ra || rc=$?
	((rc == 0)) || start_failure "docker-registry (auth)" "$TB/registry-auth/registry.log" "$TB/registry-auth/registry.cmd" \
		"- apt-get install docker-registry apache2-utils; GET /v2/ must answer 200 with user $RA_USER and the password in $TB/registry-auth.pass"

	# Both seed in parallel. They run as background jobs (not in `|| ...`) so
	# that set -e stays in force inside them.
	(seed_b >"$TB/b/seed.log" 2>&1) &
	bpid=$!
	(seed_registries >"$TB/a/seed-registries.log" 2>&1) &
	local rpid=$!
	(seed_a >"$TB/a/seed.log" 2>&1) &
	local apid=$!
	(seed_c >"$TB/c/seed.log" 2>&1) &
	cpid=$!
	wait_seeded "$apid" "$TB/a/seed.log" "dockerd A"
	wait_seeded "$rpid" "$TB/a/seed-registries.log" "the registries (built on dockerd A)"
	wait_seeded "$bpid" "$TB/b/seed.log" "dockerd B"
	wait_seeded "$cpid" "$TB/c/seed.log" "dockerd C"
	rc=0
	wait "$podpid" || rc=$?
	((rc != 90)) || start_failure "podman system service" "$TB/podman/service.log" "$TB/podman/service.cmd" "$PODMAN_HINT"
	((rc == 0)) || {
		tail -n 30 "$TB/podman/seed.log" >&2
		die "seeding podman failed (log: $TB/podman/seed.log; service log: $TB/podman/service.log)"
	}
	check_seeds

	local driver c_driver c_version
	driver=$(dk_a info --format '{{.Driver}}')
	c_driver=$(dk_c info --format '{{.Driver}}')
	c_version=$(dk_c version --format '{{.Server.Version}}')
	cat >"$TB/env.tmp" <<EOF
TESTBED_DIR=$TB
DOCKER_A=unix://$TB/a/docker.sock
DOCKER_A_SOCKET=$TB/a/docker.sock
DOCKER_B=tcp://127.0.0.1:$PORT_B
DOCKER_B_PORT=$PORT_B
TLS_CA=$TB/certs/ca.pem
TLS_CERT=$TB/certs/cert.pem
TLS_KEY=$TB/certs/key.pem
WRONG_CA=$TB/certs/wrong-ca.pem
WRONG_CERT=$TB/certs/wrong-cert.pem
WRONG_KEY=$TB/certs/wrong-key.pem
REGISTRY=127.0.0.1:$PORT_R
REGISTRY_PORT=$PORT_R
REGISTRY_IMAGE=127.0.0.1:$PORT_R/dwtest/multi:1
REGISTRY_CONFIG=$TB/registry/config.yml
DOCKERD_A_PID=$DOCKERD_A_PID
DOCKERD_B_PID=$DOCKERD_B_PID
REGISTRY_PID=$REGISTRY_PID
DOCKERD_A_LOG=$TB/a/dockerd.log
DOCKERD_B_LOG=$TB/b/dockerd.log
DOCKER_C=unix://$TB/c/docker.sock
DOCKER_C_SOCKET=$TB/c/docker.sock
DOCKER_C_CLI=$DOCKER_C_CLI
DOCKER_C_ROOT=$TRIXIE_ROOT
DOCKERD_C_PID=$DOCKERD_C_PID
DOCKERD_C_LOG=$TB/c/dockerd.log
DOCKERD_C_VERSION=$c_version
STORAGE_DRIVER_C=$c_driver
REGISTRY_LOG=$TB/registry/registry.log
STORAGE_DRIVER=$driver
DOCKER_CLI=$DOCKER_CLI
REGISTRY_AUTH=127.0.0.1:$PORT_RA
REGISTRY_AUTH_PORT=$PORT_RA
REGISTRY_AUTH_USER=$RA_USER
REGISTRY_AUTH_PASSWORD_FILE=$TB/registry-auth.pass
REGISTRY_AUTH_PID=$REGISTRY_AUTH_PID
REGISTRY_AUTH_CONFIG=$TB/registry-auth/config.yml
REGISTRY_AUTH_LOG=$TB/registry-auth/registry.log
IMAGE_MULTI1=127.0.0.1:$PORT_R/dwtest/multi:1
IMAGE_MULTI2=127.0.0.1:$PORT_R/dwtest/multi:2
IMAGE_BIG=127.0.0.1:$PORT_R/dwtest/big:1
IMAGE_MIXED=127.0.0.1:$PORT_R/dwtest/mixed:1
IMAGE_PRIVATE=127.0.0.1:$PORT_RA/private/app:1
IMAGE_MULTI1_LAYERS=$IMAGE_MULTI1_LAYERS
IMAGE_MULTI2_LAYERS=$IMAGE_MULTI2_LAYERS
IMAGE_BIG_LAYERS=$IMAGE_BIG_LAYERS
IMAGE_MIXED_LAYERS=$IMAGE_MIXED_LAYERS
IMAGE_PRIVATE_LAYERS=$IMAGE_PRIVATE_LAYERS
PODMAN_HOST=unix://$TB/podman/podman.sock
PODMAN_SOCKET=$TB/podman/podman.sock
PODMAN_PID=$PODMAN_PID
PODMAN_LOG=$TB/podman/service.log
PODMAN_ROOT=$TB/podman/root
PODMAN_RUNROOT=$TB/podman/run
PODMAN_CLI=$TB/podman/podman
PODMAN_CONTAINERS_CONF=$TB/podman/containers.conf
PODMAN_STORAGE_CONF=$TB/podman/storage.conf
PODMAN_REGISTRIES_CONF=$TB/podman/registries.conf
PODMAN_EVENTS_LOG=$TB/podman/events.log
EOF
	mv "$TB/env.tmp" "$TB/env"
	echo "testbed up in $((SECONDS - t0))s: A=unix://$TB/a/docker.sock B=tcp://127.0.0.1:$PORT_B (mTLS) C=unix://$TB/c/docker.sock (Docker $c_version, $c_driver) registry=127.0.0.1:$PORT_R registry-auth=127.0.0.1:$PORT_RA podman=unix://$TB/podman/podman.sock storage=$driver env=$TB/env"
}

# ---------------------------------------------------------------- down
# pid_of_ours PIDFILE: the pid, only if that process still runs and its command
# line names this bed's directory (no killing of a recycled pid).
pid_of_ours() {
	local p
	p=$(cat "$1" 2>/dev/null) || return 1
	[[ $p =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF "$TB/" || return 1
	echo "$p"
}

stop_pids() { # GRACE_SECONDS PID... : SIGTERM, wait, SIGKILL
	local grace=$1 p deadline alive
	shift
	(($# > 0)) || return 0
	kill -TERM "$@" 2>/dev/null
	kill -CONT "$@" 2>/dev/null # a test may have frozen one (SIGSTOP)
	deadline=$((SECONDS + grace))
	while ((SECONDS < deadline)); do
		alive=0
		for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || return 0
		sleep 0.2
	done
	for p in "$@"; do
		kill -0 "$p" 2>/dev/null && { log "pid $p did not stop in ${grace}s: SIGKILL"; kill -KILL "$p" 2>/dev/null; }
	done
	return 0
}

# every process whose command line names a daemon dir of this bed (dockerd,
# its managed containerd, containerd-shim-runc-v2, the registries, the podman
# service, its conmons and their `podman ... container cleanup` exit commands)
bed_pids() {
	local p
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] && continue
		[ "$p" = "$BASHPID" ] && continue
		tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" |
			grep -qF -e "$TB/a/" -e "$TB/b/" -e "$TB/c/" -e "$TB/registry/" -e "$TB/registry-auth/" -e "$TB/podman/" && echo "$p"
	done
	return 0
}

# remove /var/lib/containers again if podman's blob info cache is all it
# holds and no podman runs any more (see podman_setup)
podman_host_cleanup() {
	local v=/var/lib/containers p
	[ -d "$v" ] || return 0
	[ "$(find "$v" -mindepth 1 | sort | tr '\n' ' ')" = "$v/cache $v/cache/blob-info-cache-v1.boltdb " ] || return 0
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = podman ] && return 0
	done
	rm -rf "$v"
}

cmd_down() {
	local dir=$1
	set +e
	if [ ! -d "$dir" ]; then
		log "down: $dir does not exist; nothing to do"
		return 0
	fi
	TB=$(cd "$dir" && pwd -P)
	if [ ! -e "$TB/$MARKER" ]; then
		if [ -z "$(ls -A "$TB")" ]; then rmdir "$TB"; else log "down: $TB is no test bed (no $MARKER): left alone"; fi
		return 0
	fi
	if [ "$TB" = / ] || [ "${#TB}" -lt 5 ]; then
		log "down: refusing to touch $TB"
		return 0
	fi
	export DOCKER_CONFIG="$TB/cli" DOCKER_CLI_HINTS=false
	DOCKER_CLI=$(grep -s '^DOCKER_CLI=' "$TB/env" | cut -d= -f2-)
	[ -n "$DOCKER_CLI" ] || DOCKER_CLI=$(command -v docker || echo /usr/bin/docker)
	PORT_B=$(grep -s '^DOCKER_B_PORT=' "$TB/env" | cut -d= -f2-)

	local reg rega a b dc pod
	pod=$(pid_of_ours "$TB/podman/pid")
	reg=$(pid_of_ours "$TB/registry/pid")
	rega=$(pid_of_ours "$TB/registry-auth/pid")
	a=$(pid_of_ours "$TB/a/dockerd.pid" || pid_of_ours "$TB/a/pid")
	b=$(pid_of_ours "$TB/b/dockerd.pid" || pid_of_ours "$TB/b/pid")
	dc=$(pid_of_ours "$TB/c/dockerd.pid" || pid_of_ours "$TB/c/pid")
	# The registries hold nothing worth a graceful stop (a clean one drains for
	# ~2 s), and a test may have frozen one with SIGSTOP: SIGCONT + SIGKILL.
	# shellcheck disable=SC2086 # empty pids vanish on purpose
	[ -z "$reg$rega" ] || { kill -CONT $reg $rega 2>/dev/null; kill -KILL $reg $rega 2>/dev/null; }
	# Kill running containers first: `sleep` as PID 1 ignores SIGTERM, so a
	# dockerd shutdown would otherwise wait 10 s for each of them.
	if [ -n "$a" ]; then
		timeout 10 "$DOCKER_CLI" -H "unix://$TB/a/docker.sock" ps -q 2>/dev/null |
			xargs -r timeout 10 "$DOCKER_CLI" -H "unix://$TB/a/docker.sock" kill >/dev/null 2>&1 &
	fi
	local cli_c
	cli_c=$(grep -s '^DOCKER_C_CLI=' "$TB/env" | cut -d= -f2-)
	[ -x "$cli_c" ] || cli_c=$DOCKER_CLI
	if [ -n "$dc" ]; then
		timeout 10 "$cli_c" -H "unix://$TB/c/docker.sock" ps -q 2>/dev/null |
			xargs -r timeout 10 "$cli_c" -H "unix://$TB/c/docker.sock" kill >/dev/null 2>&1 &
	fi
	if [ -n "$b" ] && [ -n "$PORT_B" ]; then
		local tls=(-H "tcp://127.0.0.1:$PORT_B" --tlsverify --tlscacert "$TB/certs/ca.pem"
			--tlscert "$TB/certs/cert.pem" --tlskey "$TB/certs/key.pem")
		timeout 10 "$DOCKER_CLI" "${tls[@]}" ps -q 2>/dev/null |
			xargs -r timeout 10 "$DOCKER_CLI" "${tls[@]}" kill >/dev/null 2>&1 &
	fi
	# podman: remove every container (SIGKILL, no grace) with the CLI on the
	# same storage; works with or without the service, and makes podman itself
	# stop the conmons, unmount the rootfs and drop runc's state and cgroups.
	if [ -x "$TB/podman/podman" ] && [ -d "$TB/podman/root" ] && command -v podman >/dev/null; then
		timeout 20 "$TB/podman/podman" rm -a -f -t 0 >/dev/null 2>&1 &
	fi
	wait
	# shellcheck disable=SC2086 # empty pids vanish on purpose
	stop_pids 15 $reg $rega $a $b $dc $pod

	# leftovers: managed containerd, containerd-shim-runc-v2 (their command
	# lines name the exec-root under this bed), then container processes.
	local left
	left=$(bed_pids)
	if [ -n "$left" ]; then
		log "down: killing leftover processes of this bed: ${left//$'\n'/ }"
		# shellcheck disable=SC2086
		stop_pids 3 $left
	fi
	local ids=() c h
	# podman's containers, if `rm` above did not get them all: their
	# processes (found by cgroup below), runc's state dir, the cgroups
	# libpod-ID (cgroupfs manager)
	for c in "$TB"/podman/root/*-containers/*/; do
		[ -d "$c" ] || continue
		c=$(basename "$c")
		[[ $c =~ ^[0-9a-f]{64}$ ]] || continue
		ids+=("$c" "libpod-$c")
		rm -rf "/run/runc/$c"
	done
	for c in "$TB"/a/data/containers/*/ "$TB"/b/data/containers/*/ "$TB"/c/data/containers/*/; do
		[ -d "$c" ] || continue
		ids+=("$(basename "$c")")
		# a shim that was SIGKILLed leaves its socket in /run/containerd/s,
		# named sha256(containerd address + /moby/ + id) (containerd 1.6 and 1.7)
		c=${c%/}
		h=$(printf '%s' "${c%%/data/containers/*}/exec/containerd/containerd.sock/moby/${ids[-1]}" | sha256sum)
		rm -f "/run/containerd/s/${h%% *}"
	done
	if ((${#ids[@]})); then
		local pat=() id p
		for id in "${ids[@]}"; do pat+=(-e "$id"); done
		for p in /proc/[0-9]*; do
			grep -qsF "${pat[@]}" "$p/cgroup" && kill -KILL "${p#/proc/}" 2>/dev/null
		done
		sleep 0.2
		for id in "${ids[@]}"; do
			find /sys/fs/cgroup -depth -type d -name "$id" -exec rmdir {} \; 2>/dev/null
		done
	fi

	unmount_under "$TB"
	podman_host_cleanup

	rm -rf --one-file-system "$TB" 2>/dev/null || rm -rf --one-file-system "$TB"
	[ ! -e "$TB" ] || log "down: could not remove all of $TB"
	log "down: $TB torn down"
	return 0
}

# ---------------------------------------------------------------- registry-restart
# Start the plain registry again after a test killed it: same command line,
# config, port and storage; appends to the same log. A registry of this bed
# that still runs (say, frozen with SIGSTOP) is SIGCONT+SIGKILLed first. Waits
# until GET /v2/ answers 200, then writes the new pid to DIR/registry/pid and
# REGISTRY_PID in DIR/env (replaced whole, atomically, by rename).
cmd_registry_restart() {
	local dir=$1 t0=$EPOCHREALTIME
	set -E
	trap 'die "unexpected failure (exit $?) in ${FUNCNAME[0]:-main} at line $LINENO: $BASH_COMMAND"' ERR
	if [ ! -e "$dir/$MARKER" ] || [ ! -f "$dir/env" ]; then
		die "registry-restart: $dir is no test bed that is up (no $MARKER or env)"
	fi
	TB=$(cd "$dir" && pwd -P)
	PORT_R=$(grep '^REGISTRY_PORT=' "$TB/env" | cut -d= -f2-)
	[[ $PORT_R =~ ^[0-9]+$ ]] || die "registry-restart: no REGISTRY_PORT in $TB/env"
	local old deadline
	old=$(pid_of_ours "$TB/registry/pid" || true)
	if [ -n "$old" ]; then
		log "registry-restart: registry pid $old still runs: SIGCONT + SIGKILL"
		kill -CONT "$old" 2>/dev/null || true
		kill -KILL "$old" 2>/dev/null || true
		deadline=$((SECONDS + 10))
		# a zombie has an empty cmdline, so pid_of_ours no longer names it
		while pid_of_ours "$TB/registry/pid" >/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
	fi
	echo "----- registry-restart $(date -u +%FT%T.%NZ) -----" >>"$TB/registry/registry.log"
	launch_registry "$TB/registry"
	local rc=0
	wait_ready "$START_PID" ping_r || rc=$?
	((rc == 0)) || start_failure "docker-registry (restart)" "$TB/registry/registry.log" "$TB/registry/registry.cmd" \
		"- is port $PORT_R still held by another process? (ss -ltnp 'sport = :$PORT_R')"
	sed "s/^REGISTRY_PID=.*/REGISTRY_PID=$START_PID/" "$TB/env" >"$TB/env.tmp.$$"
	mv "$TB/env.tmp.$$" "$TB/env"
	local ms
	ms=$(python3 -c 'import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))' "$t0" "$EPOCHREALTIME")
	echo "registry restarted on 127.0.0.1:$PORT_R in ${ms} ms: REGISTRY_PID=$START_PID"
}

usage() {
	echo "usage: $0 install | up DIR | registry-restart DIR | down DIR" >&2
	exit 2
}

main() {
	(($# >= 1)) || usage
	case $1 in
	install)
		install_packages
		install_trixie
		# debootstrap (network, dpkg) runs beside the cargo-deb build (CPU)
		install_bookworm &
		local bookworm=$!
		install_cargo_deb
		wait "$bookworm" || die "making the Debian 12 root failed (see above)"
		;;
	up)
		(($# == 2)) || usage
		cmd_up "$2"
		;;
	registry-restart)
		(($# == 2)) || usage
		cmd_registry_restart "$2"
		;;
	down)
		(($# == 2)) || usage
		cmd_down "$2" || true
		exit 0
		;;
	*) usage ;;
	esac
}

main "$@"
