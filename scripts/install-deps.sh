#!/usr/bin/env bash
# Installs what building, testing and benchmarking mesh-accel needs on a
# Debian/Ubuntu machine: clang-14 and llvm-14 (the pinned BPF compiler),
# libbpf headers, iproute2, iptables, nsenter, tcpdump, buildah (the image),
# and the benchmark's standard tools: iperf3, sockperf, redis-server and
# redis-benchmark, nginx and wrk. Their services are not started: the
# benchmark runs its own servers inside its pods.
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
