#!/usr/bin/env bash
# Builds the Debian package dockwatch_<version>_<arch>.deb with cargo-deb
# (cargo install cargo-deb --locked); prints its path on the last line.
#
#   deploy/debian/build-deb.sh                  release build, package in target/debian/
#   deploy/debian/build-deb.sh --binary PATH    package PATH as it is, built by
#                                               the caller (tests/package.rs
#                                               packages the debug build it has)
#   ... --output DIR                            put the .deb in DIR
#
# Besides the binary it makes, from the binary itself: the man page and the
# bash, zsh and fish completions (the hidden `dockwatch generate`), and the
# packaged copy of deploy/systemd/dockwatch.service whose ExecStart is
# /usr/bin/dockwatch (the one unit file stays the source; the manual steps of
# the README install to /usr/local/bin). The files land where Cargo.toml's
# [package.metadata.deb] assets expect them: TARGET/release/debian/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

die() {
	echo "build-deb.sh: $*" >&2
	exit 1
}

binary= output=
while (($#)); do
	case $1 in
	--binary)
		binary=${2:?--binary needs a path}
		shift 2
		;;
	--output)
		output=${2:?--output needs a directory}
		shift 2
		;;
	*) die "unknown argument $1 (usage: $0 [--binary PATH] [--output DIR])" ;;
	esac
done

cargo deb --version >/dev/null 2>&1 ||
	die "cargo-deb is missing: cargo install cargo-deb --locked (tests/testbed.sh install does it)"

if [ -n "$binary" ]; then
	[ -x "$binary" ] || die "--binary $binary is not an executable file"
	# cargo-deb takes built files from TARGET/release; a target directory of
	# our own keeps a real release build in target/ untouched.
	target=$(mktemp -d "${TMPDIR:-/tmp}/dockwatch-deb.XXXXXX")
	trap 'rm -rf "$target"' EXIT
	mkdir -p "$target/release"
	cp "$binary" "$target/release/dockwatch"
	export CARGO_TARGET_DIR=$target
else
	cargo build --release --locked
	target=${CARGO_TARGET_DIR:-target}
fi
output=${output:-$target/debian}
bin=$target/release/dockwatch
stage=$target/release/debian
rm -rf "$stage"
mkdir -p "$stage" "$output"

"$bin" generate man | gzip -9n >"$stage/dockwatch.1.gz"
"$bin" generate bash >"$stage/dockwatch.bash"
"$bin" generate zsh >"$stage/_dockwatch"
"$bin" generate fish >"$stage/dockwatch.fish"

unit=deploy/systemd/dockwatch.service
sed -e 's|^ExecStart=/usr/local/bin/dockwatch |ExecStart=/usr/bin/dockwatch |' \
	-e 's|^# Install (as root):$|# Installed by the Debian package dockwatch (deploy/debian/build-deb.sh makes this\n# copy of deploy/systemd/dockwatch.service). By hand, elsewhere (as root):|' \
	"$unit" >"$stage/dockwatch.service"
[ "$(grep -c '^ExecStart=/usr/bin/dockwatch ' "$stage/dockwatch.service")" = 1 ] &&
	! grep -q '^ExecStart=/usr/local' "$stage/dockwatch.service" ||
	die "$unit: expected one 'ExecStart=/usr/local/bin/dockwatch ...' line to point at /usr/bin/dockwatch"

cargo deb --no-build --locked --output "$output" >"$stage/cargo-deb.out"
deb=$(tail -n 1 "$stage/cargo-deb.out")
[ -f "$deb" ] || die "cargo deb did not print the path of a package (it printed: $(cat "$stage/cargo-deb.out"))"
echo "$deb"
