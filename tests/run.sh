#!/usr/bin/env bash
# THE test command, in two tiers:
#
#   tests/run.sh          the full tier: installs what is missing (apt), brings
#                         the real test bed up (tests/testbed.sh: three dockerd,
#                         20.10 on a unix socket, 20.10 over mutual TLS and 26.1
#                         on the containerd image store; Podman; two registries;
#                         all on 127.0.0.1 or unix sockets), runs fmt, the layer
#                         check, clippy and every test target against it, then
#                         the benchmark smokes, and always tears the bed down.
#   tests/run.sh --fast   the fast tier: no packages, no bed. fmt, the layer
#                         check, clippy, the unit tests (cargo test --lib) and
#                         the integration files that need no bed (BED_FREE).
#
# At its end it prints how long each section and each test binary took.
# Any failure fails the run (exit 1), after every section has run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The integration test files (tests/NAME.rs) that need no test bed: they
# start dockwatch against nothing, a fake Engine or nothing at all. The fast
# tier runs them with DW_TESTBED unset, so one that reached for the bed
# would fail there.
BED_FREE=(bad_config cli docs fake_docker fuzz)

usage() {
	echo "usage: tests/run.sh [--fast]" >&2
	exit 2
}
fast=false
case "${1:-}" in
"") ;;
--fast) fast=true ;;
*) usage ;;
esac
(($# <= 1)) || usage

# ------------------------------------------------------------------ timing
# Each section's wall time, and each test binary's (from the time stamps
# of cargo test's output), printed at the end.
run_started=$EPOCHREALTIME
section_name=""
section_started=""
timings=()
close_section() {
	if [ -n "$section_name" ]; then
		timings+=("$(awk -v a="$section_started" -v b="$EPOCHREALTIME" -v n="$section_name" \
			'BEGIN { printf "%8.1f s  %s", b - a, n }')")
		section_name=""
	fi
}
section() {
	close_section
	section_name="$*"
	section_started=$EPOCHREALTIME
	printf '\n======================== %s ========================\n' "$*"
}

# Passes its input through, and writes each line with the time it came to
# the file $1 (seconds<TAB>line).
stamp_tee() {
	local line
	while IFS= read -r line || [ -n "$line" ]; do
		printf '%s\n' "$line"
		printf '%s\t%s\n' "$EPOCHREALTIME" "$line" >>"$1"
	done
}

# The time each test binary of a stamped cargo test log ran: from its
# "Running" line to the next one (or the log's end), with its result line;
# the longest first, after the build that came before the first.
test_times() {
	awk -F'\t' -v start="$2" '
		function close_binary(t) {
			if (name != "") { n++; dur[n] = t - began; what[n] = name; res[n] = result }
			name = ""
		}
		{ last = $1 }
		$2 ~ /^ *Running / {
			close_binary($1)
			if (!seen++) build = $1 - start
			split($2, w, " ")
			name = (w[2] == "unittests") ? w[3] : w[2]
			began = $1; result = "(no result line)"
		}
		$2 ~ /^ *Doc-tests / { close_binary($1) }
		$2 ~ /^test result: / { r = $2; sub(/^test result: /, "", r); sub(/; [0-9]+ measured.*/, "", r); result = r }
		END {
			close_binary(last)
			printf "%8.1f s  (build, before the first test binary)\n", build
			fflush()
			for (i = 1; i <= n; i++) printf "%.3f\t%8.1f s  %-28s %s\n", dur[i], dur[i], what[i], res[i] | "sort -rn | cut -f2-"
		}' "$1"
}

# ------------------------------------------------------------------ setup
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

failed=()
verdict=""
TB=""
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/dockwatch-run.XXXXXX")
test_started=""
finish() {
	local rc=$?
	trap - EXIT
	set +e
	if [ -n "$TB" ]; then
		section "test bed down"
		tests/testbed.sh down "$TB" || true
	fi
	close_section
	printf '\n======================== %s ========================\n' "timings"
	printf '%s\n' "${timings[@]}"
	awk -v a="$run_started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%8.1f s  the whole run\n", b - a }'
	if [ -s "$LOGS/cargo-test.log" ]; then
		echo
		echo "cargo test, per test binary:"
		test_times "$LOGS/cargo-test.log" "$test_started"
	fi
	rm -rf "$LOGS"
	[ -z "$verdict" ] || echo "$verdict"
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if $fast; then
	unset DW_TESTBED
	test_targets=(--lib)
	for t in "${BED_FREE[@]}"; do
		if [ -f "tests/$t.rs" ]; then
			test_targets+=(--test "$t")
		else
			echo "tests/run.sh: tests/$t.rs does not exist here, skipped" >&2
		fi
	done
else
	section "packages"
	tests/testbed.sh install

	section "test bed up"
	TB=$(mktemp -d "${TMPDIR:-/tmp}/dockwatch-tb.XXXXXX")
	tests/testbed.sh up "$TB"
	# The tests find the bed through this env file (plain KEY=VALUE lines).
	# Not DOCKWATCH_*: dockwatch reads every DOCKWATCH_* variable as config.
	export DW_TESTBED="$TB/env"
	echo "DW_TESTBED=$DW_TESTBED"
	test_targets=(--all-targets)
fi

# ------------------------------------------------------------------ checks
section "cargo fmt --all -- --check"
cargo fmt --all -- --check || failed+=("cargo fmt")

section "no import circles in src/: tests/layers.py"
python3 tests/layers.py || failed+=("import circles")

section "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings || failed+=("cargo clippy")

section "cargo test ${test_targets[*]} --no-fail-fast"
test_started=$EPOCHREALTIME
# pipefail: the pipeline fails when cargo test does.
cargo test "${test_targets[@]}" --no-fail-fast 2>&1 | stamp_tee "$LOGS/cargo-test.log" ||
	failed+=("cargo test")

if ! $fast; then
	# After the tests: the smoke adds images and containers to dockerd A (and
	# removes them again), which tests comparing counts must not see.
	section "benchmark smoke: benches/fleet.py --smoke"
	python3 benches/fleet.py --smoke --binary target/debug/dockwatch || failed+=("benchmark smoke")

	# A replay fleet of 50 endpoints (5 hung for a while) and 2 real dockerd of
	# its own: every number checked against the captures and the docker CLI.
	section "benchmark smoke: benches/fleet_scale.py --smoke"
	python3 benches/fleet_scale.py --smoke --binary target/debug/dockwatch || failed+=("fleet-scale smoke")
fi

section "summary"
if ((${#failed[@]})); then
	verdict="FAILED: ${failed[*]}"
	echo "$verdict"
	exit 1
fi
if $fast; then
	verdict="fast tier passed (fmt, layers, clippy, unit tests, bed-free tests: ${test_targets[*]})"
else
	verdict="all checks passed (fmt, clippy, tests, benchmark smoke)"
fi
echo "$verdict"
