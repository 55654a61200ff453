#!/usr/bin/env bash
# Builds the dockwatch container image (deploy/Dockerfile: a static binary
# FROM scratch) on whatever daemon the docker CLI talks to ($DOCKER_HOST, or
# its current context).
#
#   deploy/build-image.sh [TAG]        TAG defaults to dockwatch:latest
#
# Steps: cargo builds the static binary (always run; it is incremental, so
# a second build of unchanged sources takes seconds), checks that it is static
# and runs, copies it with the Dockerfile into a fresh temporary build context
# (never target/ or the repository), runs `docker build` with the classic
# builder (DOCKER_BUILDKIT=0: nothing to pull, no buildx needed), and removes
# the context again.
#
# Output: the build log goes to stderr; stdout gets one line, "TAG IMAGE_ID".
#
# Environment: DOCKER (docker CLI, default docker), CARGO (default cargo),
# CARGO_TARGET_DIR (honoured as cargo does), RUST_TARGET (the target triple,
# default the host's, e.g. x86_64-unknown-linux-gnu; it must be a -gnu or
# -musl Linux target that links statically).
set -euo pipefail

die() {
	echo "build-image.sh: $*" >&2
	exit 1
}

(($# <= 1)) || die "usage: $0 [TAG]   (default dockwatch:latest)"
TAG=${1:-dockwatch:latest}
[[ $TAG != -* ]] || die "usage: $0 [TAG]   (default dockwatch:latest)"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
DOCKER=${DOCKER:-docker}
CARGO=${CARGO:-cargo}
command -v "$DOCKER" >/dev/null || die "no docker CLI ($DOCKER) found"
command -v "$CARGO" >/dev/null || die "no cargo ($CARGO) found: install the Rust toolchain with rustup"

TRIPLE=${RUST_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
[ -n "$TRIPLE" ] || die "cannot tell the host's target triple from rustc -vV; set RUST_TARGET"

# --target is required: without it RUSTFLAGS would also reach build scripts
# and proc-macro crates, which cannot be linked statically.
echo "build-image.sh: cargo build --release --target $TRIPLE (static)" >&2
t0=$SECONDS
(
	cd "$ROOT"
	RUSTFLAGS="-C target-feature=+crt-static${RUSTFLAGS:+ $RUSTFLAGS}" \
		"$CARGO" build --release --target "$TRIPLE" --bin dockwatch >&2
)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
BIN=$TARGET_DIR/$TRIPLE/release/dockwatch
[ -x "$BIN" ] || die "cargo finished but $BIN is missing"
echo "build-image.sh: binary ready in $((SECONDS - t0)) s: $BIN ($(stat -c %s "$BIN") bytes)" >&2

# FROM scratch has no dynamic loader and no libc: refuse a dynamic binary here
# rather than ship an image that cannot start.
if command -v readelf >/dev/null; then
	if readelf -lW "$BIN" | grep -q 'Requesting program interpreter'; then
		die "$BIN is dynamically linked (it names a program interpreter); it cannot run FROM scratch"
	fi
elif command -v ldd >/dev/null && ldd "$BIN" 2>&1 | grep -q '=>'; then
	die "$BIN links shared libraries (ldd); it cannot run FROM scratch"
fi
VERSION=$("$BIN" --version | awk '{print $2}')
[ -n "$VERSION" ] || die "$BIN --version printed no version"
REVISION=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

CTX=$(mktemp -d "${TMPDIR:-/tmp}/dockwatch-image.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
cp "$ROOT/deploy/Dockerfile" "$CTX/Dockerfile"
cp "$BIN" "$CTX/dockwatch"
chmod 0755 "$CTX/dockwatch"

echo "build-image.sh: docker build -t $TAG (daemon: ${DOCKER_HOST:-from the docker CLI context})" >&2
t1=$SECONDS
DOCKER_BUILDKIT=0 "$DOCKER" build \
	--rm --force-rm \
	--build-arg "VERSION=$VERSION" \
	--build-arg "REVISION=$REVISION" \
	--iidfile "$CTX/iid" \
	-t "$TAG" \
	"$CTX" >&2
ID=$(cat "$CTX/iid")
[ -n "$ID" ] || die "docker build wrote no image id"
SIZE=$("$DOCKER" image inspect --format '{{.Size}}' "$ID")
echo "build-image.sh: built $TAG = $ID, $SIZE bytes, docker build took $((SECONDS - t1)) s" >&2
echo "$TAG $ID"
