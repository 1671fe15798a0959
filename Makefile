# ggcore — the two commands are `make run` and `make test` (see README.md).

GO      ?= go
BUILD   ?= build
BIN     := $(BUILD)/bin
# Reproducible builds: no local paths, no VCS stamps. ggcore and ggprov
# are built with cgo on the host so that they reach PKCS#11 tokens; the
# image's TPM flavour builds ggcore with CGO_ENABLED=0 (no PKCS#11).
GOFLAGS_BUILD := -trimpath -buildvcs=false -ldflags=-s\ -w
TEST_TIMEOUT ?= 30m

.PHONY: all build deps test run image images bench fuzz vet fmt-check clean

all: build

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

## test: every test, as CI runs it (.ci/run)
test: deps fmt-check vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## run: provision a demo fleet (keys in swtpm), boot the tpm image in QEMU (Ctrl-C stops it);
## GGCORE_DEMO_MODE=host runs the core on this machine instead
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

## images: every flavor for amd64, and tpm and debug for arm64
images: deps
	@for fa in tpm/amd64 pkcs11/amd64 debug/amd64 tpm/arm64 debug/arm64; do \
	  PATH="$$PATH:/usr/sbin:/sbin" initramfs/build.sh $${fa%/*} $${fa#*/} $(BUILD) || exit 1; \
	done

## bench: router micro-benchmarks; TLS handshakes by key backend (file, swtpm,
## SoftHSM2) and signatures per backend; MQTT server certificate rotation per backend; the cloud spool;
## ggcloud discovery latency and memory with 10,000 things; then ggcore against mosquitto
bench: deps build
	$(GO) test -run NONE -bench . -benchmem ./core/router
	$(GO) test -run NONE -bench Handshake -benchtime 2s ./tests/bench
	$(GO) test -run NONE -bench Sign ./tpm ./hsm
	$(GO) test -run NONE -bench Rotation -benchtime 20x ./tests/bench
	$(GO) test -run NONE -bench . ./core/spool
	$(GO) test -run NONE -bench 'Discover|ServeMemory10k' -benchtime 3s ./tools/ggcloud
	$(GO) test -run NONE -bench Boot -benchtime 5x -timeout 30m ./tests/qemu
	$(BIN)/ggbench --ggprov $(BIN)/ggprov --ggcore $(BIN)/ggcore

## fuzz: run every fuzz target (func FuzzXxx in *_test.go) for FUZZTIME each (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for fn in $$(grep -h '^func Fuzz' $$pkg/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$fn ($$pkg)"; \
	    $(GO) test $$pkg -run NONE -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) || exit 1; \
	  done; \
	done

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf $(BUILD)
