# ggcore — the two commands are `make run` and `make test` (see README.md);
# `make check` is the quick loop while editing; `make help` lists the rest.
# Every target has a `## target: text` line above it, which `make help` prints.

GO      ?= go
BUILD   ?= build
BIN     := $(BUILD)/bin
# Reproducible builds: no local paths, no VCS stamps. ggcore and ggprov
# are built with cgo on the host so that they reach PKCS#11 tokens; the
# image's TPM flavour builds ggcore with CGO_ENABLED=0 (no PKCS#11).
GOFLAGS_BUILD := -trimpath -buildvcs=false -ldflags=-s\ -w
TEST_TIMEOUT ?= 30m
# staticcheck is a tool of the module (go.mod's tool block), so its version
# is pinned by go.mod and `go tool` builds it on first use.
STATICCHECK := $(GO) tool staticcheck

.PHONY: all help build deps test check race lint tree-check run image images kernel kernels bench fuzz vet fmt-check clean powercut

## all: the same as build
all: build

## help: list the targets, one line each
help:
	@awk 'match($$0, /^## [a-zA-Z0-9_-]+: /) { doc[substr($$0, 4, RLENGTH - 5)] = substr($$0, RLENGTH + 1); next } \
	  /^[a-zA-Z0-9_-]+:/ && !/^[^:]*:=/ { t = $$0; sub(/:.*/, "", t); if (!(t in seen)) { seen[t] = 1; order[++n] = t } } \
	  END { for (i = 1; i <= n; i++) printf "  %-11s %s\n", order[i], (order[i] in doc) ? doc[order[i]] : "(no description)" }' $(MAKEFILE_LIST)

## build: ggcore, ggprov, ggcloud and ggbench into build/bin
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ggcore ./core/cmd/ggcore
	CGO_ENABLED=1 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ggprov ./tools/ggprov
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ggcloud ./tools/ggcloud
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ggbench ./tools/ggbench

## deps: install the Debian packages and Go modules the tests and demo use
deps:
	@tools/scripts/deps.sh

## test: every test, as CI runs it (.ci/run), after fmt-check, tree-check, vet and lint
test: deps kernels fmt-check tree-check vet lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# `make check` tests every package but tests/... (QEMU, the end-to-end
# runs, port 443, npm) with -short, under which a test that needs swtpm or
# SoftHSM2 skips (internal/testtool). The rest start openssl or
# mosquitto_pub where a test needs them; CI is unset, so a test whose
# program is missing skips rather than fails.
## check: the quick loop: fmt-check, tree-check, build, vet, lint, unit tests (-short); no root, apt or images
check: fmt-check tree-check
	$(GO) build ./...
	$(GO) vet ./...
	$(STATICCHECK) ./...
	CI= $(GO) test -short -timeout 2m $$($(GO) list ./... | grep -v /tests/)

# Every package but tests/qemu (the guest's processes are not built with
# -race), tests/bench (benchmarks only) and the packages of pure functions,
# which have no goroutines, locks, channels or servers of their own and no
# concurrent tests. A package added later is raced unless it is listed here.
RACE_SKIP := /tests/qemu /tests/bench /core/config /core/pki /core/topic \
	/internal/cli /internal/doccheck /internal/keyspec /tools/ggcloud/policy

## race: the tests of every package with concurrency under the race detector (all but tests/qemu)
race: deps
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v $(patsubst %,-e '%$$',$(RACE_SKIP)))

## lint: staticcheck (the version pinned in go.mod; configuration in staticcheck.conf)
lint:
	$(STATICCHECK) ./...

## tree-check: fail on tracked build outputs, files over 1 MiB, or binaries .gitignore misses
tree-check:
	@tools/scripts/check-tree.sh

## run: provision a demo fleet (keys in swtpm) and boot the tpm image in QEMU (Ctrl-C stops it)
# GGCORE_DEMO_MODE=host runs the core on this machine instead. The image's
# data disk (build/demo-disk.img) is kept between runs; FRESH=1 rebuilds it.
GGCORE_DEMO_MODE ?= image
run: deps build
ifeq ($(GGCORE_DEMO_MODE),host)
	@tools/scripts/demo.sh $(BUILD)
else
	@PATH="$$PATH:/usr/sbin:/sbin" initramfs/build.sh tpm amd64 $(BUILD)
	@exec tools/scripts/demo-image.sh $(BUILD)
endif

## image: the firmware image FLAVOR (tpm, pkcs11, debug) for ARCH (amd64, arm64) into build/images
FLAVOR ?= tpm
ARCH   ?= amd64
image: deps
	@PATH="$$PATH:/usr/sbin:/sbin" initramfs/build.sh $(FLAVOR) $(ARCH) $(BUILD)

## kernel: ggcore's kernel for ARCH (amd64, arm64): linux-source-6.1 + buildroot/board/ggcore/linux-ARCH.fragment, cached in build/kernel
kernel: deps
	@initramfs/kernel-build.sh $(ARCH) $(BUILD)/kernel

## kernels: the kernels of both architectures (once per fragment; GGCORE_KERNEL_CACHE=DIR shares them between clones)
kernels: deps
	@for a in amd64 arm64; do initramfs/kernel-build.sh $$a $(BUILD)/kernel || exit 1; done

## images: every flavor for amd64, and tpm and debug for arm64
images: deps
	@for fa in tpm/amd64 pkcs11/amd64 debug/amd64 tpm/arm64 debug/arm64; do \
	  PATH="$$PATH:/usr/sbin:/sbin" initramfs/build.sh $${fa%/*} $${fa#*/} $(BUILD) || exit 1; \
	done

## bench: every benchmark, then ggbench: ggcore against mosquitto and bare mochi, and a soak
# SOAK is how long ggbench's soak runs (1,000 devices, 1 msg/s each, QoS 1, through routes).
SOAK ?= 10m
# In order: router micro-benchmarks; TLS handshakes by key backend (file,
# swtpm, SoftHSM2) and signatures per backend; MQTT server certificate
# rotation per backend; the cloud spool; ggcloud discovery latency and
# memory with 10,000 things; boots of the tpm image; then ggbench, on
# ggcore built static as the tpm image ships it ($(BIN)/ggcore-static;
# $(BIN)/ggcore is the cgo build the pkcs11 flavor needs).
bench: deps build
	$(GO) test -run NONE -bench . -benchmem ./core/router
	$(GO) test -run NONE -bench Handshake -benchtime 2s ./tests/bench
	$(GO) test -run NONE -bench Sign ./tpm ./hsm
	$(GO) test -run NONE -bench Rotation -benchtime 20x ./tests/bench
	$(GO) test -run NONE -bench Function -benchtime 2s ./tests/bench
	$(GO) test -run NONE -bench . ./core/spool
	$(GO) test -run NONE -bench 'Discover|ServeMemory10k' -benchtime 3s ./tools/ggcloud
	$(GO) test -run NONE -bench Boot -benchtime 5x -timeout 30m ./tests/qemu
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/ggcore-static ./core/cmd/ggcore
	$(BIN)/ggbench --ggprov $(BIN)/ggprov --ggcore $(BIN)/ggcore-static --soak $(SOAK)

## powercut: cut QEMU's power at POINTS (default 100) random moments of a trial boot and of an install, per arch; every next boot must reach a healthy slot
POINTS ?= 100
powercut: deps kernels
	@mkdir -p $(BUILD); status=0; \
	GGCORE_POWERCUT_POINTS=$(POINTS) $(GO) test -count=1 -timeout 0 -run 'TestOtaPowerCut' -v ./tests/qemu >$(BUILD)/powercut.log 2>&1 || status=$$?; \
	grep -E -e '--- |^(ok|FAIL)|power cut ' $(BUILD)/powercut.log; echo "powercut: full log in $(BUILD)/powercut.log"; exit $$status

## fuzz: run every fuzz target (func FuzzXxx in *_test.go) for FUZZTIME each (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for fn in $$(grep -h '^func Fuzz' $$pkg/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$fn ($$pkg)"; \
	    $(GO) test $$pkg -run NONE -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) || exit 1; \
	  done; \
	done

## vet: go vet on every package
vet:
	$(GO) vet ./...

## fmt-check: fail when a Go file (tracked, or new and not ignored) is not gofmt-formatted
# Tracked and new (not ignored) files; a tracked file deleted in the work
# tree is skipped. Without git, every .go file outside node_modules.
fmt-check:
	@files=$$(git ls-files -co --exclude-standard '*.go' 2>/dev/null || find . -name '*.go' -not -path '*/node_modules/*'); \
	out=$$(for f in $$files; do [ -f "$$f" ] && echo "$$f"; done | xargs -r gofmt -l); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## clean: remove build/
clean:
	rm -rf $(BUILD)
