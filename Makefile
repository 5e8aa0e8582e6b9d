# privcloud's build. `make test` is what CI runs (.ci/run); `make lab` brings up a cluster in the local lab.
SHELL := /bin/bash
GO    ?= go
BIN   := _output/privcloud
PKG   := github.com/privcloud/privcloud

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS := -X $(PKG)/internal/version.Version=$(VERSION) \
           -X $(PKG)/internal/version.Commit=$(COMMIT) \
           -X $(PKG)/internal/version.Date=$(DATE)

# kubeadm for the PKI comparison, built from source. The default Kubernetes version is v1.37.2, but the Go module
# proxy refuses the source of k8s.io/kubernetes v1.37.2; v1.37.1 has the same certificate code.
KUBEADM_VERSION ?= v1.37.1

.PHONY: build test unit lint e2e bench lab lab-up lab-down bundle clean

## build: the privcloud binary in _output/ (static, reproducible paths)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/privcloud

## test: lint, then every unit and integration test (what CI runs)
test: lint
	$(GO) test -count=1 -tags integration ./...

## unit: the fast unit tests only (seconds)
unit:
	$(GO) test ./...

## lint: gofmt and go vet, for both the default and the integration build
lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...

## bench: side-by-side benchmarks, written into BENCHMARKS.md (needs Debian's ansible-core for the comparison)
bench: build
	@command -v ansible >/dev/null || { echo "installing ansible-core (the fan-out comparison)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ansible-core >/dev/null; }
	$(GO) run ./bench/sshbench -privcloud $(BIN) -update BENCHMARKS.md
	kubeadm=$$(bench/build-kubeadm.sh $(KUBEADM_VERSION)) && \
		$(GO) run ./bench/pkibench -privcloud $(BIN) -kubeadm $$kubeadm -kubeadm-version $(KUBEADM_VERSION) -update BENCHMARKS.md

# These targets arrive with the lab, bundle and cluster phases; until then they say so and fail.
e2e lab lab-up lab-down bundle:
	@echo "make $@: not available yet: it needs the SSH transport, the air-gap bundle and the lab (see README.md, Status)" >&2
	@exit 2

clean:
	rm -rf _output
