#!/usr/bin/env bash
# THE test command: tests/run.sh
# Installs what is missing (apt), brings the real test bed up (tests/testbed.sh:
# two dockerd + a registry on 127.0.0.1), runs fmt, clippy and every test
# target against it, and always tears the bed down again.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n======================== %s ========================\n' "$*"; }

# rustup's cargo, also when called with a bare environment
if [ -d "${HOME:-/root}/.cargo/bin" ]; then
	case ":$PATH:" in
	*":${HOME:-/root}/.cargo/bin:"*) ;;
	*) PATH="${HOME:-/root}/.cargo/bin:$PATH" ;;
	esac
fi
command -v cargo >/dev/null || {
	echo "tests/run.sh: cargo not found (install the Rust toolchain with rustup)" >&2
	exit 1
}

section "packages"
tests/testbed.sh install

section "test bed up"
TB=$(mktemp -d "${TMPDIR:-/tmp}/dockwatch-tb.XXXXXX")
teardown() {
	local rc=$?
	trap - EXIT
	section "test bed down"
	tests/testbed.sh down "$TB" || true
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
tests/testbed.sh up "$TB"
# The tests find the bed through this env file (plain KEY=VALUE lines).
# Not DOCKWATCH_*: dockwatch reads every DOCKWATCH_* variable as config.
export DW_TESTBED="$TB/env"
echo "DW_TESTBED=$DW_TESTBED"

failed=()
section "cargo fmt --all -- --check"
cargo fmt --all -- --check || failed+=("cargo fmt")

section "no import circles in src/: tests/layers.py"
python3 tests/layers.py || failed+=("import circles")

section "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings || failed+=("cargo clippy")

section "cargo test --all-targets --no-fail-fast"
cargo test --all-targets --no-fail-fast || failed+=("cargo test")

# After the tests: the smoke adds images and containers to dockerd A (and
# removes them again), which tests comparing counts must not see.
section "benchmark smoke: benches/fleet.py --smoke"
python3 benches/fleet.py --smoke --binary target/debug/dockwatch || failed+=("benchmark smoke")

# A replay fleet of 50 endpoints (5 hung for a while) and 2 real dockerd of
# its own: every number checked against the captures and the docker CLI.
section "benchmark smoke: benches/fleet_scale.py --smoke"
python3 benches/fleet_scale.py --smoke --binary target/debug/dockwatch || failed+=("fleet-scale smoke")

section "summary"
if ((${#failed[@]})); then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
echo "all checks passed (fmt, clippy, tests, benchmark smoke)"
