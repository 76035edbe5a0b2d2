# vswitch — build and test entry points. `make test` is what CI runs.
GO       ?= go
FUZZTIME ?= 30s

.PHONY: test vet fmt-check bench fuzz demo demo-cluster build lab bpf console

## test: gofmt check, go vet, the guest lab, and every test with the race detector (uncached)
test: fmt-check vet lab
	$(GO) test -race -count=1 ./...

## lab: build the QEMU test guest, install etcd for the cluster tests, Chromium
## for the console's browser test and the console's pinned npm packages
## (as root: installs qemu, busybox-static, the kernel, etcd-server, chromium with apt-get)
lab:
	@if [ "$$(id -u)" = 0 ]; then bash lab/build-guest.sh && bash lab/etcd.sh && bash lab/chromium.sh; else echo "not root: guest lab not built, guest, cluster and browser tests will skip"; fi
	@bash lab/console.sh

## demo: as root, run vswitch on its defaults in a sandbox and show what it does (STAY=1 keeps it up)
demo:
	bash demo/demo.sh

## demo-cluster: as root, three vswitch hosts (namespaces) on one etcd, a switch spanning them, a cross-host ping matrix
demo-cluster:
	bash demo/cluster.sh

## bpf: rebuild the kernel data path's program after a change to internal/kdp/bpf/kdp.c
## (the object and its Go are committed: a plain build needs no clang; as root installs clang, libbpf-dev)
bpf:
	@if ! command -v clang >/dev/null || [ ! -e /usr/include/bpf/bpf_helpers.h ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libbpf-dev; \
	  else echo "need clang and libbpf-dev (apt-get install clang libbpf-dev)"; exit 1; fi; fi
	cd internal/kdp && $(GO) generate ./...

## console: rebuild the web console's bundle (internal/web/static/app.js, committed)
## from internal/web/ui/src with the npm packages pinned in its package-lock.json
console:
	bash internal/web/ui/build.sh

## build: vswitchd and vswitchctl into bin/
build:
	$(GO) build -o bin/ ./cmd/vswitchd ./cmd/vswitchctl

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## bench: the Go benchmarks of the core (numbers in README.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

## fuzz: run every fuzz target for FUZZTIME each (new finds land in the Go cache;
## copy interesting ones to the package's testdata/fuzz to keep them)
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done
