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

.PHONY: build test unit lint e2e bench bench-scale bench-cold-bundle lab lab-up lab-down lab-status bundle monitoring-crds production-bundle clean deps-lab deps-test

## build: the privcloud binary in _output/ (static, reproducible paths)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/privcloud

## test: lint, every unit and integration test, then the e2e suite on lab hosts (what CI runs; needs root)
# On a fresh machine the e2e suite builds its bundles (Kubernetes included) from source first: minutes,
# cached in ~/.cache/privcloud afterwards; the timeouts leave room for that.
test: deps-test lint
	$(GO) test -count=1 -timeout 20m -tags integration ./...
	$(GO) test -count=1 -timeout 80m -tags e2e -v ./e2e/...

## deps-lab, deps-test: check root, Go and disk space, and install the Debian/Ubuntu packages make lab and make
## test need, in seconds and before any long build (hack/deps.sh; .ci/run uses it too)
deps-lab:
	@hack/deps.sh lab
deps-test:
	@hack/deps.sh test

## unit: the fast unit tests only (seconds)
unit:
	$(GO) test ./...

## lint: gofmt and go vet, for the default, integration and e2e builds
lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) vet -tags e2e ./e2e/...

## e2e: only the e2e suite (fresh lab hosts per scenario)
e2e:
	$(GO) test -count=1 -timeout 80m -tags e2e -v ./e2e/...

# The local lab: hosts h1..hN at 10.77.0.11.. (routed ones at 10.77.2.1x), their cluster.yaml, keys and known_hosts in .lab/.
N       ?= 3
ROUTED  ?= $(if $(filter 1 2,$(N)),,3)
LABCTL  := $(GO) run ./e2e/labctl -dir .lab

## lab-up: start N lab hosts (N=3 by default) that answer SSH with verified host keys; the hosts in ROUTED
## (default: h3 when there are 3 or more) sit on a second subnet behind the lab's router
lab-up:
	$(LABCTL) -n $(N) -routed "$(ROUTED)" -bundle _output/lab-bundle.tar.zst up

## lab-down: remove the lab's hosts, mounts, namespaces and cgroups, even after a crash
lab-down:
	$(LABCTL) down

## lab-status: the lab's hosts and their links
lab-status:
	$(LABCTL) status

## lab: the newcomer's command: the lab bundle, 3 lab hosts, privcloud init, then the nodes and the kubeconfig
lab: deps-lab bundle lab-up
	@$(BIN) init -f .lab/cluster.yaml || { code=$$?; echo; \
		echo "privcloud init stopped (exit $$code). The hosts are still up: 'make lab-down' removes them."; exit $$code; }
	@echo; $(BIN) exec -f .lab/cluster.yaml --hosts h1 -- kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o wide
	@echo; $(BIN) addons status -f .lab/cluster.yaml
	@echo; echo "The cluster is up. Its admin kubeconfig is .lab/kubeconfig; the bundle's kubectl is unpacked in .lab/state:"; \
		echo "  $$(ls .lab/state/bundle/*/bin/kubectl/*/kubectl | sort -V | tail -1) --kubeconfig .lab/kubeconfig get pods -A"; \
		echo "  $(BIN) exec -f .lab/cluster.yaml -- systemctl is-active kubelet containerd"; \
		echo "Take it down with: make lab-down"

## bench: side-by-side benchmarks, written into BENCHMARKS.md (needs Debian's ansible-core for the comparison)
bench: build
	@command -v ansible >/dev/null || { echo "installing ansible-core (the fan-out comparison)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ansible-core >/dev/null; }
	$(GO) run ./bench/sshbench -privcloud $(BIN) -update BENCHMARKS.md
	kubeadm=$$(bench/build-kubeadm.sh $(KUBEADM_VERSION)) && \
		$(GO) run ./bench/pkibench -privcloud $(BIN) -kubeadm $$kubeadm -kubeadm-version $(KUBEADM_VERSION) -update BENCHMARKS.md
	$(GO) run ./bench/labbench -update BENCHMARKS.md
	$(MAKE) bundle
	$(GO) run ./bench/clusterbench -privcloud $(BIN) -bundle _output/lab-bundle.tar.zst -sizes 1,3 -update BENCHMARKS.md

## bench-scale: init on 1, 3, 10 and 20 lab hosts (phases, peak memory, no-op re-run) into BENCHMARKS.md. Labs
## over 5 hosts need more inotify instances: this raises the machine's limits for the run and restores them after
bench-scale: build bundle
	$(GO) run ./bench/clusterbench -privcloud $(BIN) -bundle _output/lab-bundle.tar.zst -sizes 1,3,10,20 -skip-distribution -raise-inotify -update BENCHMARKS.md

## bench-cold-bundle: the lab bundle built with every cache empty (about a quarter of an hour on 2 cores)
bench-cold-bundle: build
	bench/cold-bundle.sh $(BIN)

## bundle: the default lab bundle, built from source into _output/ (cached: a rebuild with nothing changed only repacks)
bundle: deps-lab build
	$(BIN) bundle build -f e2e/lab/bundle.yaml -o _output/lab-bundle.tar.zst

## monitoring-crds: the Prometheus Operator's CRDs that privcloud embeds, printed by the lab bundle's operator
## (run after make bundle when the operator's version changes)
monitoring-crds: bundle
	hack/monitoring-crds.sh

## production-bundle: everything privcloud installs, with Quay, PostgreSQL and Redis pulled from their registries
## (a machine with registry access; unpinned pulls get their digest written into bundles/production.yaml)
production-bundle: deps-lab build
	$(BIN) bundle build --pin -f bundles/production.yaml -o _output/privcloud-bundle.tar.zst

clean:
	rm -rf _output
