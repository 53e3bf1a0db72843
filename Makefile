# mesh-accel: make deps | generate | build | test | bench | lint | demo
GO       ?= go
BIN      := bin
GOFLAGS  ?=
# Static and stripped: the CNI plugin starts for every pod, and a smaller
# binary starts faster (about 7 ms of a 50 ms ADD here).
LDFLAGS  ?= -s -w
# The release all three binaries report (installer --version, mesh-accelctl
# version, the plugin's about text): package internal/version.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION_LDFLAGS := -X github.com/mesh-accel/mesh-accel/internal/version.version=$(VERSION)
IMAGE    ?= localhost/mesh-accel:dev
# The benchmark's knobs and its data path without capture (bpf/meshbench.go)
# exist only with this tag: the benchmark, the demo and the tests build with
# it, the binaries nodes run (plugin, installer, mesh-accelctl) never do.
BENCH_TAGS := -tags meshbench
export CGO_ENABLED := 0

.PHONY: all deps generate check-generate check-tidy build test test-short bench demo image lint clean release-manifests

all: build

deps:
	@./scripts/install-deps.sh

# Rebuild the BPF objects (bpf2go + clang-14); the .go and .o are committed.
generate: deps
	cd bpf && $(GO) generate ./...

# CI: the committed BPF objects must be what the sources compile to.
check-generate: generate
	@git diff --exit-code -- bpf/ || { echo "bpf/: generated files are stale, run 'make generate' and commit" >&2; exit 1; }

# CI: go.mod and go.sum are what `go mod tidy` makes them (the CNI plugins the
# e2e tests build are `tool` lines, so tidy keeps their dependencies).
check-tidy:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum: run 'go mod tidy' and commit" >&2; exit 1; }

build:
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS) -trimpath -ldflags "$(LDFLAGS) $(VERSION_LDFLAGS)" -o $(BIN)/ ./plugin/cmd/mesh-accel ./ctl/cmd/mesh-accelctl \
		./installer/cmd/mesh-accel-installer
	$(GO) build $(GOFLAGS) $(BENCH_TAGS) -trimpath -ldflags "$(LDFLAGS) $(VERSION_LDFLAGS)" -o $(BIN)/ \
		./test/bench/mesh-accel-bench ./test/demo/mesh-accel-demo

# The tests need root, BPF and cgroup v2 (they skip locally without, fail under CI=true).
test: deps
	$(GO) test $(GOFLAGS) $(BENCH_TAGS) -count=1 -timeout 20m ./...

test-short:
	$(GO) test $(GOFLAGS) $(BENCH_TAGS) -short -count=1 ./...

# Benchmark the four modes interleaved; BENCH_SECONDS shortens, BENCH_JSON=FILE writes JSON.
bench: deps build
	$(BIN)/mesh-accel-bench

# The one-command demo (root, Linux 6.1+, cgroup v2): DEMO_SECONDS sets each fortio run (default 4 s).
demo: deps build
	$(BIN)/mesh-accel-demo

# The capacity benchmark (root, BPF, cgroup v2; docs/benchmark.md, "Capacity"): pods 1 to 1000 through the
# plugin, connections up to the maps' capacity, the installer scraped. BENCH_SCALE_PODS=1,50
# BENCH_SCALE_CONNS=0,1000 shortens it; BENCH_SCALE_JSON=FILE writes JSON and the SVG curves beside it.
.PHONY: bench-scale
bench-scale: deps build
	$(GO) build $(GOFLAGS) -trimpath -ldflags "$(LDFLAGS) $(VERSION_LDFLAGS)" -o $(BIN)/ ./test/bench/scale/mesh-accel-bench-scale
	$(BIN)/mesh-accel-bench-scale

# The container image: static binaries built here, put on scratch by buildah (no daemon).
image: deps
	@rm -rf $(BIN)/image && mkdir -p $(BIN)/image
	$(GO) build $(GOFLAGS) -trimpath -ldflags "$(LDFLAGS) $(VERSION_LDFLAGS)" \
		-o $(BIN)/image/ ./installer/cmd/mesh-accel-installer ./plugin/cmd/mesh-accel ./ctl/cmd/mesh-accelctl
	buildah build --layers=false -f Containerfile -t $(IMAGE) $(BIN)/image

# Release manifests in $(BIN)/release: the kustomize and Helm renderings, the
# monitoring objects (mesh-accel-monitoring.yaml) and the packaged chart, with
# the image by version and digest (the chart's digest applies to its own tag
# only). It refuses a chart whose generated files (README's values table,
# monitoring copies, default rules) or configmap.yaml's default rules are
# stale: `go generate ./manifests/render`.
# VERSION=v1.2.3 IMAGE=registry/mesh-accel (no tag); DIGEST=sha256:... or,
# when empty, the digest of the image `make image` built as IMAGE:VERSION
# (buildah inspect).
release-manifests:
	@GO="$(GO)" VERSION="$(VERSION)" IMAGE="$(IMAGE)" DIGEST="$(DIGEST)" OUT="$(BIN)/release" ./scripts/release-manifests.sh

# vet with the benchmark's tag, and the packages nodes run without it.
lint:
	$(GO) vet $(BENCH_TAGS) ./...
	$(GO) vet $$($(GO) list ./... | grep -v /test/)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf $(BIN)

# Boot Debian's bookworm cloud kernels (6.1, 6.12) under qemu (TCG) and run the
# BPF tests (and an e2e subset) in each, plus natively on this kernel; prints a
# table. KERNELS=6.1,6.12,host TESTS=pattern E2E=0|1 E2E_TESTS=pattern LOGDIR=dir.
.PHONY: test-kernels
test-kernels:
	@GO="$(GO)" ./scripts/test-kernels.sh
