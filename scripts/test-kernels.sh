#!/usr/bin/env bash
# Runs mesh-accel's BPF tests on several kernels and prints a table: one row
# per kernel, one column per test (PASS/FAIL/SKIP), and the time taken.
#
# Each Debian kernel (the bookworm cloud-amd64 packages, fetched with
# apt-get download and cached) is booted under qemu-system-x86_64 with TCG
# (KVM is not needed). The guest's root filesystem is the host's own root,
# shared read-only over virtiofs (as cilium's vimto does) under a tmpfs
# overlay that takes the guest's writes, so the statically linked test binaries and every host
# tool the e2e tests need (iptables, nsenter, ip) run in the guest unchanged.
# A tiny busybox initramfs loads the virtio/fuse/overlay modules the kernel
# lacks, mounts the share and switches root into it. Test output comes back
# on a second serial port; kernel messages go to the first.
#
# The "host" kernel runs the same binaries natively (outside qemu): this
# machine's kernel image is usually not available to boot.
#
# Environment:
#   KERNELS    comma-separated: 6.1, 6.12, host, or exact package names
#              (linux-image-...-unsigned) (default 6.1,6.12,host)
#   TESTS      -test.run pattern for the ./bpf test binary (default: all)
#   E2E        1 to also run the ./test/e2e subset (default 1), 0 to skip
#   E2E_TESTS  -test.run pattern for the e2e binary (default below)
#   TIMEOUT    seconds per kernel, boot to power-off (default 1800)
#   MEM, SMP   guest memory (MiB) and CPUs (default 2048, 1)
#   CACHE      kernel cache (default /var/cache/mesh-accel-kernels)
#   LOGDIR     if set, keep each kernel's serial console and test output there
#   REV        if set (e.g. HEAD), test that git revision (git archive) instead
#              of the working tree
# Needs root (apt-get, virtiofsd, and the tests themselves).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

KERNELS=${KERNELS:-6.1,6.12,host}
TESTS=${TESTS:-}
E2E=${E2E:-1}
# The default e2e subset: pairing through Istio's REDIRECT on all three hops
# (and what is left alone), IPv4, IPv6 and v4-mapped, checksummed streams
# (scaled down by -short), half-close and reset, splice readers, flow
# control with a stopped reader, and isolation.
E2E_TESTS=${E2E_TESTS:-'^(TestDefaultRulesThreeHops|TestNoRulesAllHops|TestAnnotationDefaultsLeaveOneWayHops|TestSidecarHopsProfile|TestPeerWithoutAcceleration|TestIPv6AndDualStack|TestBulkChecksummed|TestHalfCloseAndReset|TestSpliceReadingApp|TestStoppedReader|TestSameAddressOtherPod|TestTupleReuseAfterResetUntrusted|TestUserNamespacedPods|TestNearestPodCgroup)$'}
TIMEOUT=${TIMEOUT:-1800}
MEM=${MEM:-2048}
SMP=${SMP:-1}
CACHE=${CACHE:-/var/cache/mesh-accel-kernels}
LOGDIR=${LOGDIR:-}
REV=${REV:-}
GO=${GO:-go}

log() { printf 'test-kernels: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, virtiofsd and the BPF tests need it)"

# --- cleanup: everything this run creates is under $WORK or a child process.
WORK=
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- what the run needs on the host, installed only when missing.
need=()
have() { command -v "$1" >/dev/null 2>&1; }
want_vm=0
want_host=0
IFS=, read -r -a klist <<<"$KERNELS"
for k in "${klist[@]}"; do
	case "$k" in
	host) want_host=1 ;;
	'') ;;
	*) want_vm=1 ;;
	esac
done
if [ "$want_vm" = 1 ]; then
	have qemu-system-x86_64 || need+=(qemu-system-x86)
	# busybox-static replaces the dynamically linked busybox.
	if ! have busybox || ldd "$(command -v busybox)" >/dev/null 2>&1; then need+=(busybox-static); fi
	have xz || need+=(xz-utils)
	have cpio || need+=(cpio)
	have depmod || need+=(kmod)
	have dpkg-deb || need+=(dpkg)
fi
if [ "$E2E" = 1 ]; then
	have ip || need+=(iproute2)
	have iptables-restore || need+=(iptables)
	have nsenter || need+=(util-linux)
fi
if [ ${#need[@]} -gt 0 ]; then
	have apt-get || die "missing ${need[*]} and no apt-get"
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; } ||
		die "apt-get install ${need[*]} failed"
fi
VIRTIOFSD=
if [ "$want_vm" = 1 ]; then
	for v in /usr/libexec/virtiofsd /usr/lib/qemu/virtiofsd; do
		[ -x "$v" ] && { VIRTIOFSD=$v; break; }
	done
	if [ -z "$VIRTIOFSD" ]; then
		log "installing virtiofsd"
		apt-get install -y --no-install-recommends virtiofsd >/dev/null || die "no virtiofsd (qemu-system-x86 of bookworm ships /usr/lib/qemu/virtiofsd; later releases the virtiofsd package)"
		VIRTIOFSD=/usr/libexec/virtiofsd
	fi
fi
BUSYBOX=$(command -v busybox || true)

# Not under /tmp: the guest mounts its own tmpfs there and must see this.
mkdir -p "$CACHE"
WORK=$(mktemp -d "${WORKDIR:-/var/tmp}/mesh-accel-kernels.XXXXXX")
chmod 755 "$WORK"

# --- the test binaries: static, so they run on any root.
if [ -n "$REV" ]; then
	log "testing $REV ($(git rev-parse --short "$REV"))"
	mkdir "$WORK/src"
	git archive "$REV" | tar -x -C "$WORK/src"
	REPO=$WORK/src
fi
# The guest mounts its own tmpfs on /tmp and /run, which hides a checkout
# there (CI may clone anywhere): such a checkout is copied where it sees it.
case "$REPO/" in
/tmp/* | /run/*)
	log "copying the checkout from $REPO (the guest mounts its own /tmp and /run)"
	mkdir -p "$WORK/src"
	tar -C "$REPO" --exclude=./.git --exclude=./bin -cf - . | tar -C "$WORK/src" -xf -
	REPO=$WORK/src
	;;
esac
log "building test binaries"
mkdir -p "$WORK/bin"
# Built as `make test` builds them: with the benchmark's knobs (the e2e tests
# allow one-way acceleration, bpf.PodConfig.WithOneWay).
(cd "$REPO" && CGO_ENABLED=0 "$GO" test -tags meshbench -c -o "$WORK/bin/bpf.test" ./bpf)
if [ "$E2E" = 1 ]; then
	(cd "$REPO" && CGO_ENABLED=0 "$GO" test -tags meshbench -c -o "$WORK/bin/e2e.test" ./test/e2e)
fi

# The suites, one a line, tab-separated: name, package directory (the
# working directory: tests read testdata/ relative to it), binary, -test.run
# pattern, extra flags.
suites=(bpf)
printf '%s\t%s\t%s\t%s\t%s\n' bpf "$REPO/bpf" "$WORK/bin/bpf.test" "$TESTS" "" >"$WORK/suites"
if [ "$E2E" = 1 ]; then
	suites+=(e2e)
	printf '%s\t%s\t%s\t%s\t%s\n' e2e "$REPO/test/e2e" "$WORK/bin/e2e.test" "$E2E_TESTS" "-test.short" >>"$WORK/suites"
fi

# The script every kernel runs, as root with the guest's (or host's) mounts
# in place: each suite's -test.v output between markers, to fd 3.
cat >"$WORK/run-suites.sh" <<'EOF'
#!/bin/bash
# usage: run-suites.sh SUITES-FILE (lines: name dir binary pattern flags, tab-separated)
export CI=true
while IFS=$'\t' read -r name dir bin pat flags <&4; do
	echo "@@mesh-accel-begin $name@@" >&3
	start=$(date +%s%N)
	rc=0
	# shellcheck disable=SC2086
	(cd "$dir" && exec "$bin" -test.v -test.count=1 -test.timeout 20m ${pat:+-test.run "$pat"} $flags) >&3 2>&1 || rc=$?
	end=$(date +%s%N)
	echo "@@mesh-accel-end $name rc=$rc seconds=$(((end - start) / 1000000000))@@" >&3
done 4<"$1"
EOF
chmod 755 "$WORK/run-suites.sh"

# The guest's second stage, run from the shared host root after switch_root.
cat >"$WORK/stage2.sh" <<'EOF'
#!/bin/bash
# usage: stage2.sh WORKDIR KERNEL-MODULES-DIR
work=$1 moddir=$2
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
for d in /tmp /run; do
	mount -t tmpfs -o mode=1777 tmpfs "$d"
done
mkdir -p /run/netns
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
# The guest kernel's modules, for modprobe (iptables' nf_tables, veth ...).
mkdir -p "/lib/modules/$(uname -r)"
mount --bind "$moddir" "/lib/modules/$(uname -r)"
ip link set lo up
hostname mesh-accel-guest 2>/dev/null
dmesg -n 5
exec 3>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 2>/dev/null || true
echo "@@mesh-accel-kernel $(uname -r)@@" >&3
"$work/run-suites.sh" "$work/suites"
echo "@@mesh-accel-dmesg@@" >&3
dmesg | grep -E 'WARNING:|BUG:|Oops|Call Trace|Kernel panic|general protection|RIP:|segfault|invalid opcode' | tail -60 >&3 || true
echo "@@mesh-accel-done@@" >&3
sync
echo o >/proc/sysrq-trigger
sleep 10
EOF
chmod 755 "$WORK/stage2.sh"

# --- kernels: the newest bookworm cloud package of a series, or a name.
kernel_package() {
	local want=$1 glob
	case "$want" in
	6.1) glob='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
	6.12) glob='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' ;;
	linux-image-*) echo "$want"; return ;;
	*) die "unknown kernel $want (6.1, 6.12, host or a linux-image-... package)" ;;
	esac
	local pkg
	search() {
		apt-cache search --names-only '^linux-image-.*cloud-amd64-unsigned$' 2>/dev/null |
			awk '{print $1}' | grep -E "$glob" | sort -V | tail -1 || true
	}
	pkg=$(search)
	if [ -z "$pkg" ] && ! find "$CACHE" -maxdepth 1 -name 'linux-image-*.deb' | grep -q .; then
		apt-get update >/dev/null 2>&1 || true # a fresh machine without apt lists
		pkg=$(search)
	fi
	if [ -z "$pkg" ]; then # no apt lists: the newest cached one
		pkg=$(find "$CACHE" -maxdepth 1 -name 'linux-image-*.deb' -printf '%f\n' 2>/dev/null |
			sed 's/_.*//' | grep -E "$glob" | sort -V | tail -1 || true)
	fi
	[ -n "$pkg" ] || die "no package for kernel $want (apt-get update?)"
	echo "$pkg"
}

# Fetches and extracts a kernel package once; prints the extracted directory.
kernel_dir() {
	local pkg=$1 deb dir
	deb=$(find "$CACHE" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -1)
	if [ -z "$deb" ]; then
		log "downloading $pkg"
		(cd "$CACHE" && apt-get download "$pkg" >/dev/null 2>&1) ||
			(cd "$CACHE" && apt-get update >/dev/null && apt-get download "$pkg" >/dev/null 2>&1) ||
			die "apt-get download $pkg failed"
		deb=$(find "$CACHE" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -1)
	fi
	dir=${deb%.deb}
	if [ ! -e "$dir/.extracted" ]; then
		rm -rf "$dir"
		dpkg-deb -x "$deb" "$dir"
		local v
		v=$(basename "$(find "$dir/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -1)")
		# The package leaves modules.dep to its postinst.
		depmod -b "$dir" "$v"
		touch "$dir/.extracted"
	fi
	echo "$dir"
}

# Prints, in load order, the module files (relative to the modules dir) that
# the named modules need and the kernel does not have built in.
module_files() {
	local mdir=$1
	shift
	local m line f seen=" " deps i
	for m in "$@"; do
		line=$(awk -F: -v n="$m" '{b=$1; sub(/.*\//,"",b); sub(/\.ko(\.[a-z]+)?$/,"",b); gsub(/-/,"_",b); if (b==n) {print; exit}}' "$mdir/modules.dep")
		if [ -z "$line" ]; then
			grep -qE "/${m//_/[-_]}\.ko" "$mdir/modules.builtin" || log "module $m not found, hoping it is built in"
			continue
		fi
		read -r -a deps <<<"${line#*:}"
		for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
			f=${deps[i]}
			case "$seen" in *" $f "*) ;; *) seen="$seen$f "; echo "$f" ;; esac
		done
		f=${line%%:*}
		case "$seen" in *" $f "*) ;; *) seen="$seen$f "; echo "$f" ;; esac
	done
}

# Builds the initramfs for a kernel: busybox, the modules needed to reach
# the virtiofs root (decompressed: busybox insmod takes plain .ko), /init.
build_initramfs() {
	local kdir=$1 out=$2 ver mdir root f base
	ver=$(basename "$(find "$kdir/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -1)")
	mdir=$kdir/lib/modules/$ver
	root=$(mktemp -d "$WORK/initramfs.XXXXXX")
	mkdir -p "$root"/{bin,dev,proc,sys,lower,rw,newroot,modules}
	cp "$BUSYBOX" "$root/bin/busybox"
	# The kernel opens /dev/console for init before devtmpfs is mounted.
	mknod -m 600 "$root/dev/console" c 5 1
	mknod -m 666 "$root/dev/null" c 1 3
	: >"$root/modules/order"
	while read -r f; do
		[ -n "$f" ] || continue
		base=$(basename "$f")
		case "$base" in
		*.ko.xz) xz -dc "$mdir/$f" >"$root/modules/${base%.xz}" ;;
		*.ko.zst) zstd -dcq "$mdir/$f" >"$root/modules/${base%.zst}" ;;
		*.ko.gz) gzip -dc "$mdir/$f" >"$root/modules/${base%.gz}" ;;
		*.ko) cp "$mdir/$f" "$root/modules/$base" ;;
		esac
		echo "${base%.ko*}.ko" >>"$root/modules/order"
	done < <(module_files "$mdir" virtio_pci fuse virtiofs overlay)
	cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
	insmod "/modules/$m" || echo "init: insmod $m failed"
done
set -- $(cat /proc/cmdline)
stage2=
for a; do
	case "$a" in mesh_accel.stage2=*) stage2=${a#*=} ;; esac
done
# The root: the host's, read-only, under a tmpfs overlay that takes
# every write.
ok=0
for i in 1 2 3 4 5 6 7 8 9 10; do
	mount -t virtiofs -o ro hostroot /lower && { ok=1; break; }
	sleep 1
done
mount -t tmpfs -o mode=755 tmpfs /rw && mkdir /rw/upper /rw/work &&
	mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || ok=0
if [ "$ok" != 1 ]; then
	echo "init: cannot mount the root (virtiofs + overlay)"
	echo o >/proc/sysrq-trigger
	sleep 10
fi
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
set -- $(echo "$stage2" | tr ',' ' ')
exec switch_root /newroot /bin/bash "$@"
EOF
	chmod 755 "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
	rm -rf "$root"
	echo "$ver"
}

# Boots one kernel; its test output ends up in $3 (and the console in $4).
run_vm() {
	local kdir=$1 tag=$2 out=$3 console=$4 ver vmlinuz initrd sock vpid qpid moddir args s
	initrd=$WORK/$tag.initrd
	ver=$(build_initramfs "$kdir" "$initrd")
	vmlinuz=$kdir/boot/vmlinuz-$ver
	moddir=$kdir/lib/modules/$ver
	sock=$WORK/$tag.vfs.sock
	# sandbox=chroot: the namespace sandbox's pivot_root fails (EBUSY) when
	# the shared directory is /.
	"$VIRTIOFSD" --socket-path="$sock" -o source=/ -o sandbox=chroot -o cache=auto -o log_level=err >"$WORK/$tag.virtiofsd.log" 2>&1 &
	vpid=$!
	PIDS+=("$vpid")
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
	[ -S "$sock" ] || { cat "$WORK/$tag.virtiofsd.log" >&2; return 1; }
	# The kernel command line carries stage2's arguments, comma-separated.
	args="$WORK/stage2.sh,$WORK,$moddir"
	case "$args" in *' '* | *'"'*) die "paths may not contain spaces: $args" ;; esac
	: >"$out"
	timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
		-accel tcg -m "$MEM" -smp "$SMP" -nodefaults -display none -no-reboot \
		-object "memory-backend-memfd,id=mem,size=${MEM}M,share=on" -numa node,memdev=mem \
		-chardev "socket,id=vfs,path=$sock" -device vhost-user-fs-pci,chardev=vfs,tag=hostroot \
		-device virtio-rng-pci \
		-serial "file:$console" -serial "file:$out" \
		-kernel "$vmlinuz" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 mitigations=off rdinit=/init mesh_accel.stage2=$args" \
		</dev/null >"$WORK/$tag.qemu.log" 2>&1 &
	qpid=$!
	PIDS+=("$qpid")
	local rc=0
	wait "$qpid" || rc=$?
	kill "$vpid" 2>/dev/null || true
	wait "$vpid" 2>/dev/null || true
	PIDS=()
	[ "$rc" -eq 124 ] && echo "@@mesh-accel-timeout@@" >>"$out"
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
		sed 's/^/qemu: /' "$WORK/$tag.qemu.log" >&2
		sed 's/^/virtiofsd: /' "$WORK/$tag.virtiofsd.log" >&2
	fi
	return 0
}

run_host() {
	local out=$1
	# The host's own bpffs and cgroup2 mounts: the tests make their own
	# pinning roots and cgroups under them (never the root cgroup).
	"$WORK/run-suites.sh" "$WORK/suites" 3>"$out" || true
	echo "@@mesh-accel-done@@" >>"$out"
}

# --- run each kernel, one at a time.
rows=()
for k in "${klist[@]}"; do
	[ -n "$k" ] || continue
	tag=$(echo "$k" | tr -c 'A-Za-z0-9.\n' '_')
	out=$WORK/$tag.out
	console=$WORK/$tag.console
	start=$(date +%s)
	if [ "$k" = host ]; then
		log "host kernel $(uname -r): no bootable image, running natively"
		name="host $(uname -r) (native)"
		: >"$console"
		run_host "$out"
	else
		pkg=$(kernel_package "$k")
		kdir=$(kernel_dir "$pkg")
		name=$pkg
		name=${name#linux-image-}
		name=${name%-unsigned}
		log "booting $pkg (TCG, timeout ${TIMEOUT}s)"
		run_vm "$kdir" "$tag" "$out" "$console"
	fi
	secs=$(($(date +%s) - start))
	tr -d '\r' <"$out" >"$out.clean"
	if [ -n "$LOGDIR" ]; then
		mkdir -p "$LOGDIR"
		cp "$out.clean" "$LOGDIR/$tag.tests.log"
		tr -d '\r' <"$console" >"$LOGDIR/$tag.console.log" || true
	fi
	rows+=("$tag|$name|$secs")
	log "$name: done in ${secs}s"
done

# --- the tables: per suite, one row per kernel, one column per test.
status=0
summary() { # file suite -> "state", a word
	awk -v s="$2" '
		$0 == "@@mesh-accel-begin " s "@@" { begun = 1 }
		index($0, "@@mesh-accel-end " s " ") == 1 { match($0, /rc=[0-9]+/); rc = substr($0, RSTART + 3, RLENGTH - 3); ended = 1 }
		/^@@mesh-accel-timeout@@/ { to = 1 }
		END {
			if (ended) print (rc == 0 ? "ok" : "exit" rc)
			else if (to) print "timeout"
			else if (begun) print "crashed"
			else print "no-boot"
		}' "$1"
}
results() { # file suite -> "Test STATE" lines (top-level tests)
	awk -v s="$2" '
		$0 == "@@mesh-accel-begin " s "@@" { on = 1; next }
		index($0, "@@mesh-accel-end " s " ") == 1 { on = 0 }
		on && /^--- (PASS|FAIL|SKIP): / { print $3, substr($2, 1, length($2) - 1) }' "$1"
}
suite_secs() {
	sed -n "s/^@@mesh-accel-end $2 rc=[0-9]* seconds=\([0-9.]*\)@@$/\1/p" "$1" | awk '{printf "%ss", $1}'
}

for suite in "${suites[@]}"; do
	# Columns: every test any kernel ran, in order of first appearance.
	cols=()
	for r in "${rows[@]}"; do
		tag=${r%%|*}
		while read -r t _; do
			case " ${cols[*]-} " in *" $t "*) ;; *) cols+=("$t") ;; esac
		done < <(results "$WORK/$tag.out.clean" "$suite")
	done
	echo
	echo "== $suite tests ($( [ "$suite" = bpf ] && echo "${TESTS:-all}" || echo "$E2E_TESTS"))"
	{
		printf 'KERNEL\tRESULT\tTOTAL\tSUITE'
		for c in "${cols[@]}"; do printf '\t%s' "$c"; done
		printf '\n'
		for r in "${rows[@]}"; do
			IFS='|' read -r tag name secs <<<"$r"
			f=$WORK/$tag.out.clean
			st=$(summary "$f" "$suite")
			tt=$(suite_secs "$f" "$suite")
			declare -A res=()
			while read -r t v; do res[$t]=$v; done < <(results "$f" "$suite")
			printf '%s\t%s\t%ss\t%s' "$name" "$st" "$secs" "${tt:--}"
			for c in "${cols[@]}"; do
				v=${res[$c]:--}
				printf '\t%s' "$v"
			done
			printf '\n'
			unset res
		done
	} | column -t -s $'\t'
done

echo
echo "TOTAL: wall clock for the kernel (boot, every suite, power-off); SUITE: the suite's own run."
echo "RESULT: ok, exitN (test binary's status), crashed (no end marker), timeout (TIMEOUT=${TIMEOUT}s), no-boot."

# --- why: each failure's output, and what broke a run.
for r in "${rows[@]}"; do
	IFS='|' read -r tag name secs <<<"$r"
	f=$WORK/$tag.out.clean
	for suite in "${suites[@]}"; do
		st=$(summary "$f" "$suite")
		fails=$(results "$f" "$suite" | awk '$2 == "FAIL" {print $1}')
		[ "$st" = ok ] && [ -z "$fails" ] && continue
		status=1
		echo
		echo "== $name, $suite: $st"
		for t in $fails; do
			# The test's own lines: from its === RUN to its --- FAIL.
			# (and the subtests' results after it).
			awk -v t="$t" '
				done && !/^ +--- / { exit }
				$0 ~ "^=== (RUN|CONT|PAUSE) +" t "(/|$)" { on = 1 }
				on && !/^=== (RUN|CONT|PAUSE|NAME) +[^\/]*$/ { print }
				$0 ~ "^--- FAIL: " t " " { done = 1 }' "$f" | head -60
		done
		if [ "$st" != ok ] && [ -z "$fails" ]; then
			echo "-- last test output:"
			awk -v s="$suite" '$0 == "@@mesh-accel-begin " s "@@" { on = 1; next } on' "$f" |
				grep -v '^@@' | tail -30
			if [ -s "$WORK/$tag.console" ]; then
				echo "-- last console lines:"
				tr -d '\r' <"$WORK/$tag.console" | tail -30
			fi
		fi
	done
	if grep -q '^@@mesh-accel-dmesg@@' "$f"; then
		k=$(sed -n '/^@@mesh-accel-dmesg@@$/,/^@@mesh-accel-done@@$/p' "$f" | grep -v '^@@' || true)
		if [ -n "$k" ]; then
			echo
			echo "== $name: kernel warnings and oopses:"
			echo "$k"
		fi
	fi
done
[ -n "$LOGDIR" ] && log "logs kept in $LOGDIR"
exit "$status"
