#!/usr/bin/env bash
# Wall time of a cold image pull: `dockwatch pull` against `docker pull`, same
# image, same daemon (test bed dockerd A), same local registry.
#
#   benches/pull_vs_docker.sh [--image REF] [--binary PATH] [RUNS]   (RUNS per tool, default 7)
#
# --binary: the dockwatch binary to time (default: cargo build --release).
#
# Test bed: $DW_TESTBED (the env file written by `tests/testbed.sh up DIR`) if
# set, else one of its own, brought up in a temp dir and torn down on exit.
#
# Image: by default REGISTRY/dwtest/bench:1, built here on A (FROM scratch,
# 8 COPY layers of 32 MiB from /dev/urandom: 256 MiB, incompressible), pushed
# to REGISTRY and removed from A again. --image REF pulls an image that is
# already in the bed's registry instead; --image big (or IMAGE_BIG) is the
# bed's REGISTRY/dwtest/big:1 (4 x 16 MiB), for a quick smoke run.
#
# The runs alternate in pairs (dockwatch, docker / docker, dockwatch / ...).
# Before each run the image is removed from A (docker rmi -f) and checked cold:
# no image left on A holds any of its layers. Each run must exit 0 and leave the
# image on A with the registry's manifest digest. Times are wall clock around
# the client process alone (date +%s.%N). The image is removed from A at exit.
set -euo pipefail

usage() {
	echo "usage: $0 [--image REF] [--binary PATH] [RUNS]   (RUNS per tool, default 7)" >&2
	exit 2
}

IMAGE=
RUNS=7
BINARY=
while (($#)); do
	case $1 in
	--image)
		(($# >= 2)) || usage
		IMAGE=$2
		shift 2
		;;
	--image=*)
		IMAGE=${1#--image=}
		shift
		;;
	--binary)
		(($# >= 2)) || usage
		BINARY=$2
		shift 2
		;;
	-h | --help) usage ;;
	*)
		[[ $1 =~ ^[1-9][0-9]*$ ]] || usage
		RUNS=$1
		shift
		;;
	esac
done

export LC_ALL=C # sort/comm/awk: one collation, "." decimals
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
T_START=$(date +%s.%N)
log() { printf '[bench] %s\n' "$*" >&2; }
die() {
	printf '[bench] FAILED: %s\n' "$*" >&2
	exit 1
}

# Nothing from the caller's environment may steer the daemon, the CLI or
# dockwatch's config (DOCKWATCH_* overrides any config key).
unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^DOCKWATCH_' || true)

WORK=$(mktemp -d /tmp/dw-bench.XXXXXX)
OWN_BED=
BUILT=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if [ -n "${DOCKER_A:-}" ] && [ -n "${IMAGE:-}" ] && [ -n "${DOCKER_CLI:-}" ]; then
		"$DOCKER_CLI" -H "$DOCKER_A" rmi -f "$IMAGE" >/dev/null 2>&1
	fi
	if [ -n "$OWN_BED" ]; then
		log "tearing down own test bed $OWN_BED"
		"$ROOT/tests/testbed.sh" down "$OWN_BED" >&2
	fi
	rm -rf --one-file-system "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ test bed
if [ -n "${DW_TESTBED:-}" ]; then
	ENV_FILE=$DW_TESTBED
	[ -f "$ENV_FILE" ] || die "DW_TESTBED=$ENV_FILE is no file"
	log "using test bed $ENV_FILE"
else
	OWN_BED=$WORK/bed
	log "bringing up a test bed in $OWN_BED (tests/testbed.sh up)"
	"$ROOT/tests/testbed.sh" up "$OWN_BED" >&2
	ENV_FILE=$OWN_BED/env
fi
envget() { # KEY: its value in the bed's env file (plain KEY=VALUE lines, not sourced)
	local v
	v=$(grep -m1 "^$1=" "$ENV_FILE" | cut -d= -f2-) || true
	[ -n "$v" ] || die "no $1 in $ENV_FILE"
	printf '%s\n' "$v"
}
DOCKER_A=$(envget DOCKER_A)
DOCKER_CLI=$(envget DOCKER_CLI)
REGISTRY=$(envget REGISTRY)
IMAGE_BIG=$(envget IMAGE_BIG)
export DOCKER_CONFIG=$WORK/cli DOCKER_CLI_HINTS=false # keep the CLI away from ~/.docker
mkdir -p "$DOCKER_CONFIG"
dk() { "$DOCKER_CLI" -H "$DOCKER_A" "$@"; }
dk version --format '{{.Server.Version}}' >/dev/null || die "daemon A ($DOCKER_A) does not answer"

# ------------------------------------------------------------------ dockwatch
if [ -n "$BINARY" ]; then
	DW=$BINARY PROFILE="given: $BINARY"
	[ -x "$DW" ] || die "--binary $DW is no executable"
else
	log "cargo build --release"
	(cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
	DW=$ROOT/target/release/dockwatch PROFILE=release
	[ -x "$DW" ] || die "no $DW after the build"
fi
# a private copy: a concurrent rebuild of target/ must not change the binary mid-bench
cp "$DW" "$WORK/dockwatch"
DW=$WORK/dockwatch
CFG=$WORK/dockwatch.toml
printf '[[daemons]]\nname = "a"\nhost = "%s"\n' "$DOCKER_A" >"$CFG"
"$DW" check-config --config "$CFG" >/dev/null || die "dockwatch rejects its config $CFG"

# ------------------------------------------------------------------ image
case $IMAGE in IMAGE_BIG | big) IMAGE=$IMAGE_BIG ;; esac # the bed's dwtest/big:1, whatever its port
if [ -z "$IMAGE" ]; then
	IMAGE=$REGISTRY/dwtest/bench:1
	BUILT=1
	NLAYERS=8 LAYER_MIB=32
	ctx=$WORK/ctx
	mkdir -p "$ctx"
	printf 'FROM scratch\n' >"$ctx/Dockerfile"
	for i in $(seq 1 "$NLAYERS"); do
		head -c $((LAYER_MIB << 20)) /dev/urandom >"$ctx/layer$i.bin"
		printf 'COPY layer%s.bin /layer%s.bin\n' "$i" "$i" >>"$ctx/Dockerfile"
	done
	log "building $IMAGE ($NLAYERS layers of $LAYER_MIB MiB random) on A"
	t0=$(date +%s)
	DOCKER_BUILDKIT=0 dk build --network none --rm --force-rm -q -t "$IMAGE" "$ctx" >/dev/null || die "docker build of $IMAGE failed"
	rm -rf "$ctx"
	log "pushing $IMAGE"
	dk push "$IMAGE" >/dev/null || die "docker push of $IMAGE failed"
	log "built and pushed in $(($(date +%s) - t0)) s"
fi

# what the registry serves: schema 2 manifest (digest, compressed layer sizes)
repo_tag=${IMAGE#"$REGISTRY"/}
[ "$repo_tag" != "$IMAGE" ] || die "$IMAGE is not in the bed's registry $REGISTRY"
case $repo_tag in
*@*) die "give --image as NAME:TAG" ;;
*:*) repo=${repo_tag%:*} tag=${repo_tag##*:} ;;
*) repo=$repo_tag tag=latest ;;
esac
curl -fsS --max-time 10 -D "$WORK/manifest.head" -o "$WORK/manifest.json" \
	-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	"http://$REGISTRY/v2/$repo/manifests/$tag" || die "registry has no manifest for $IMAGE"
MANIFEST_DIGEST=$(tr -d '\r' <"$WORK/manifest.head" | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }')
read -r NL LAYERS_BYTES CONFIG_BYTES < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
assert m.get("mediaType") == "application/vnd.docker.distribution.manifest.v2+json", m.get("mediaType")
print(len(m["layers"]), sum(l["size"] for l in m["layers"]), m["config"]["size"])' "$WORK/manifest.json")
[ -n "$MANIFEST_DIGEST" ] || die "registry sent no Docker-Content-Digest for $IMAGE"

# the image's layers (diff IDs), from the config blob: for the coldness check
curl -fsS --max-time 10 -o "$WORK/config.json" \
	"http://$REGISTRY/v2/$repo/blobs/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["digest"])' "$WORK/manifest.json")"
python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["rootfs"]["diff_ids"]))' \
	"$WORK/config.json" | sort -u >"$WORK/diff_ids"

# make_cold: the image gone from A, and no image left on A holding any of its
# layers (a shared layer would be "Already exists", not a download)
make_cold() {
	dk rmi -f "$IMAGE" >/dev/null 2>&1 || true
	if dk image inspect "$IMAGE" >/dev/null 2>&1; then die "$IMAGE still on A after docker rmi -f"; fi
	local ids shared
	ids=$(dk images -a -q --no-trunc | sort -u)
	[ -n "$ids" ] || return 0
	# shellcheck disable=SC2086
	shared=$(dk image inspect --format '{{range .RootFS.Layers}}{{println .}}{{end}}' $ids |
		sort -u | comm -12 - "$WORK/diff_ids")
	[ -z "$shared" ] || die "not cold: images on A still hold layer(s) of $IMAGE: $shared"
}
make_cold # first of all: the build's own image and intermediates must be gone

# ------------------------------------------------------------------ runs
run_dockwatch() { "$DW" pull --config "$CFG" "$IMAGE" >/dev/null; }
run_docker() { dk pull "$IMAGE" >/dev/null; }

declare -a T_dockwatch=() T_docker=()
one_run() { # TOOL N
	local tool=$1 n=$2 t0 t1 rc=0 dt got
	make_cold
	sync
	t0=$(date +%s.%N)
	"run_$tool" || rc=$?
	t1=$(date +%s.%N)
	((rc == 0)) || die "$tool pull of $IMAGE exited $rc (run $n)"
	dk image inspect "$IMAGE" >/dev/null 2>&1 || die "$tool pull exited 0 but $IMAGE is not on A (run $n)"
	got=$(dk image inspect --format '{{join .RepoDigests " "}}' "$IMAGE")
	[[ " $got " == *"@$MANIFEST_DIGEST "* ]] ||
		die "$tool pull (run $n): A holds $IMAGE with digest(s) [$got], the registry serves $MANIFEST_DIGEST"
	dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	if [ "$tool" = dockwatch ]; then T_dockwatch+=("$dt"); else T_docker+=("$dt"); fi
	log "run $n $tool: $dt s"
}

log "image $IMAGE: $NL layers, $LAYERS_BYTES bytes compressed; $RUNS cold pulls per tool"
for ((p = 0; p < RUNS; p++)); do
	if ((p % 2 == 0)); then
		one_run dockwatch $((p + 1))
		one_run docker $((p + 1))
	else
		one_run docker $((p + 1))
		one_run dockwatch $((p + 1))
	fi
done
dk rmi -f "$IMAGE" >/dev/null 2>&1 || true

# ------------------------------------------------------------------ report
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
M_DW=$(median "${T_dockwatch[@]}")
M_DK=$(median "${T_docker[@]}")
RATIO=$(awk -v a="$M_DW" -v b="$M_DK" 'BEGIN { printf "%.3f", a / b }')
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=
# --no-optional-locks: never take .git/index.lock in a tree others work in
if [ -n "$(git --no-optional-locks -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then DIRTY=+dirty; fi
echo "== cold pull: dockwatch pull vs docker pull =="
echo "machine:   $(nproc) CPUs, ${MODEL:-unknown model}, kernel $(uname -r)"
echo "daemon:    dockerd $(dk version --format '{{.Server.Version}}') ($(dk info --format '{{.Driver}}')) at $DOCKER_A"
echo "client:    docker CLI $(dk version --format '{{.Client.Version}}') ($DOCKER_CLI); dockwatch $("$DW" --version | awk '{ print $2 }') (git $REV$DIRTY, $PROFILE)"
echo "registry:  $REGISTRY (plain HTTP, same host)"
echo "image:     $IMAGE${BUILT:+ (built for this bench)}"
echo "           $NL layers, $LAYERS_BYTES bytes compressed ($(mib "$LAYERS_BYTES") MiB) + config $CONFIG_BYTES bytes; $MANIFEST_DIGEST"
echo "runs:      $RUNS per tool, alternating, each pull cold (image removed from A first)"
echo
printf '%-6s %12s %12s\n' run "dockwatch/s" "docker/s"
for ((i = 0; i < RUNS; i++)); do
	printf '%-6s %12s %12s\n' $((i + 1)) "${T_dockwatch[i]}" "${T_docker[i]}"
done
printf '%-6s %12s %12s\n' median "$M_DW" "$M_DK"
echo
echo "ratio dockwatch/docker (medians): $RATIO"
echo "throughput (medians): dockwatch $(awk -v b="$LAYERS_BYTES" -v t="$M_DW" 'BEGIN { printf "%.1f", b / 1048576 / t }') MiB/s, docker $(awk -v b="$LAYERS_BYTES" -v t="$M_DK" 'BEGIN { printf "%.1f", b / 1048576 / t }') MiB/s"
echo "bench wall time: $(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s (without bed teardown)"
