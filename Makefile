# DarkShell build. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin
PKG       := github.com/bohica-labs/darkshell
# The build version names both binaries of one build (scripts/version.sh).
VERSION   ?= $(shell ./scripts/version.sh)
LDFLAGS   := -s -w -X $(PKG)/protocol.BuildVersion=$(VERSION)
ARCHES    := amd64 arm64
AGENTBIN  := controller/agentbin/bin
FUZZTIME  ?= 10s
STATICCHECK_VERSION := v0.8.2
# Real MCP servers for the MCP tests and bench-mcp, installed by `make deps`
# from integration/testdata/mcp-servers/package.json into this cached dir.
MCP_SERVERS := $(CURDIR)/.cache/mcp-servers
export DARKSHELL_MCP_SERVERS := $(MCP_SERVERS)

export CGO_ENABLED := 0

.PHONY: help
help: ## Show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z0-9_-]+:.*## /{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the system packages tests and the demo need (openssh-server, rsync, dnsmasq, iproute2, curl, ping, podman with runc and catatonit, clang+libbpf-dev for probes, etcd+containerd+CNI plugins+gcc for the test cluster, prometheus for the export tests)
	@need=""; for p in openssh-server:/usr/sbin/sshd rsync:/usr/bin/rsync dnsmasq-base:/usr/sbin/dnsmasq iproute2:/usr/sbin/ip curl:/usr/bin/curl iputils-ping:/usr/bin/ping wget:/usr/bin/wget podman:/usr/bin/podman runc:/usr/sbin/runc catatonit:/usr/libexec/podman/catatonit clang:/usr/bin/clang libbpf-dev:/usr/include/bpf/bpf_helpers.h etcd-server:/usr/bin/etcd containerd:/usr/bin/containerd containernetworking-plugins:/usr/lib/cni/bridge gcc:/usr/bin/gcc libc6-dev:/usr/lib/x86_64-linux-gnu/libc.a prometheus:/usr/bin/prometheus; do \
	  [ -e "$${p#*:}" ] || need="$$need $${p%%:*}"; done; \
	if [ -n "$$need" ]; then \
	  echo "installing$$need"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q --no-install-recommends $$need >/dev/null 2>&1 || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q --no-install-recommends $$need >/dev/null; }; \
	fi
	@mkdir -p /run/sshd 2>/dev/null || true
	@$(MAKE) --no-print-directory mcp-servers
	@$(MAKE) --no-print-directory backends

# Observability backends the export tests run (docs/export.md), built from
# the module proxy into .cache/backends: Jaeger v2 (all in one; an OTel
# Collector distribution, so it also receives OTLP logs and metrics).
BACKENDS       := $(CURDIR)/.cache/backends
JAEGER_VERSION := v1.76.0

.PHONY: backends
backends: ## Build the export tests' backends (Jaeger) from the module proxy into .cache/backends (slow the first time)
	@mkdir -p $(BACKENDS)/jaeger-src
	@if [ ! -x $(BACKENDS)/jaeger ] || [ "$$(cat $(BACKENDS)/jaeger.version 2>/dev/null)" != "$(JAEGER_VERSION)" ]; then \
	  echo "building jaeger $(JAEGER_VERSION) into $(BACKENDS) (several minutes on a clean machine)"; \
	  cd $(BACKENDS)/jaeger-src && rm -f go.mod go.sum && \
	  printf 'module darkshell.local/backends/jaeger\n\ngo 1.26.0\n' > go.mod && \
	  $(GO) get -tool github.com/jaegertracing/jaeger/cmd/jaeger@$(JAEGER_VERSION) >/dev/null 2>&1 && \
	  $(GO) build -trimpath -o $(BACKENDS)/jaeger github.com/jaegertracing/jaeger/cmd/jaeger && \
	  echo $(JAEGER_VERSION) > $(BACKENDS)/jaeger.version || \
	  { echo "jaeger build failed: export tests will skip (fail with DARKSHELL_REQUIRE_ALL=1)"; rm -f $(BACKENDS)/jaeger; }; \
	fi

.PHONY: mcp-servers
mcp-servers: ## Install the npm MCP servers the tests use into .cache/mcp-servers (needs node and npm)
	@if ! command -v npm >/dev/null; then echo "npm not found: MCP tests will skip (fail with DARKSHELL_REQUIRE_ALL=1)"; exit 0; fi; \
	mkdir -p $(MCP_SERVERS); \
	if ! cmp -s integration/testdata/mcp-servers/package.json $(MCP_SERVERS)/package.json || [ ! -d $(MCP_SERVERS)/node_modules/@modelcontextprotocol/server-everything ]; then \
	  cp integration/testdata/mcp-servers/package.json $(MCP_SERVERS)/package.json && \
	  echo "installing MCP servers into $(MCP_SERVERS)" && \
	  (cd $(MCP_SERVERS) && npm install --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null) || \
	    { rm -f $(MCP_SERVERS)/package.json; echo "npm install failed: MCP tests will skip (fail with DARKSHELL_REQUIRE_ALL=1)"; }; \
	fi

.PHONY: build
build: sandboxd darkshell ## Build sandboxd (static, amd64+arm64) and darkshell with both embedded

.PHONY: sandboxd
sandboxd:
	@mkdir -p $(BIN) $(AGENTBIN)
	@for a in $(ARCHES); do \
	  GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sandboxd-linux-$$a ./cmd/sandboxd || exit 1; \
	  $(GO) run ./controller/agentbin/gen -in $(BIN)/sandboxd-linux-$$a -out $(AGENTBIN)/sandboxd-linux-$$a.zst || exit 1; \
	done
	@cp $(BIN)/sandboxd-linux-$$($(GO) env GOARCH) $(BIN)/sandboxd

# darkshell is the thin front (a fresh `exec` starts in a few milliseconds);
# darkshell-core, next to it, is the full CLI and daemon it hands the rest to.
.PHONY: darkshell
darkshell: sandboxd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/darkshell-core ./cmd/darkshell-core
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/darkshell ./cmd/darkshell
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/darkshell-kube ./cmd/darkshell-kube
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/darkshell-export ./cmd/darkshell-export
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/darkshell-gitops ./cmd/darkshell-gitops
	@echo "built $(BIN)/darkshell (+ darkshell-core, darkshell-kube, darkshell-export, darkshell-gitops) and $(BIN)/sandboxd, version $(VERSION)"

.PHONY: demo
demo: deps build ## The main job: a sandbox on a loopback sshd this starts itself, then exec
	./scripts/demo.sh

.PHONY: probes
probes: ## Regenerate the eBPF objects and Go bindings in probes/ (needs clang, libbpf-dev: make deps)
	cd probes && $(GO) generate ./...

.PHONY: probes-check
probes-check: ## Fail when the committed probes/ output is stale
	@$(MAKE) -s probes
	@if [ -n "$$(git status --porcelain -- probes/)" ]; then git status --short -- probes/; echo "probes/ output is stale: run 'make probes' and commit the result"; exit 1; fi

.PHONY: test
test: deps build lint probes-check test-unit test-fuzz test-integration-all ## Everything CI runs: lint, probes staleness, unit, fuzz, integration (kubernetes in parallel)
	@echo "all tests passed"

.PHONY: test-short
test-short: ## Fast inner loop: unit tests only, no real sshd
	$(GO) test -short ./...

.PHONY: test-unit
test-unit: build
	CGO_ENABLED=1 $(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)
	# allocation guards skip under -race (it changes escape analysis): run them without it
	$(GO) test -count=1 -run 'Allocs$$' ./mcpproxy/ ./internal/treesync/

.PHONY: test-integration
test-integration: build ## End-to-end tests against a real sshd on loopback (all but the kubernetes cluster tests)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m -skip '^TestKube' ./integration/...

# The kubernetes tests share no state with the others (their own cluster in their own network
# namespace, their own DARKSHELL_HOMEs): test-integration-all runs both at once, the cluster's
# first build (make k8s) overlapping the other integration tests.
.PHONY: test-integration-all
test-integration-all: build
	@$(MAKE) --no-print-directory -j2 test-integration test-kube

.PHONY: k8s
k8s: ## Build kube-apiserver, controller-manager, scheduler, kubelet and kubectl from the Go module proxy into .cache/k8s/bin (cached; first build ~11 min on 2 cores)
	./scripts/k8s/build.sh

.PHONY: test-kube
test-kube: build k8s ## kubernetes driver: conformance and driver tests on a real single-node cluster started in a test-made network namespace
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m -run '^TestKube' ./integration/

.PHONY: test-fuzz
test-fuzz: ## Run every fuzz target for FUZZTIME (default 10s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | cut -c6-); do \
	    echo "fuzz $$pkg $$t"; out=$$(mktemp); \
	    if ! $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1; then \
	      tail -30 $$out; \
	      $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime 1x $$pkg || { rm -f $$out; exit 1; }; \
	      echo "fuzz $$t failed without saving a failing input (a worker crashed or hung): once more"; \
	      $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1 || { tail -30 $$out; rm -f $$out; exit 1; }; \
	    fi; rm -f $$out; \
	  done; done

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' ; git ls-files -o --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

.PHONY: bench-exec
bench-exec: deps build ## Exec latency: daemon API, fresh CLI, fresh ssh, ssh ControlMaster
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -run '^$$' -bench BenchmarkExec -benchtime 1x -timeout 20m ./integration/

.PHONY: bench-sync
bench-sync: deps build ## Sync: darkshell vs rsync -a over the same sshd (initial, no change, small change, big-file delta, download)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -run '^$$' -bench BenchmarkSync -benchtime 1x -timeout 20m ./integration/

.PHONY: bench-egress
bench-egress: deps build ## Egress proxy: added latency per request and per new connection vs direct, requests/s (needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) DARKSHELL_BENCH_RUNS=$${DARKSHELL_BENCH_RUNS:-300} $(GO) test -count=1 -run '^$$' -bench BenchmarkEgress -benchtime 1x -timeout 20m ./integration/

.PHONY: bench-local
bench-local: build ## local driver: create-to-first-exec and exec p50/p99 (needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) DARKSHELL_BENCH_RUNS=$${DARKSHELL_BENCH_RUNS:-100} $(GO) test -count=1 -run '^$$' -bench BenchmarkLocalCreate -benchtime 1x -timeout 20m ./integration/

.PHONY: bench-pool
bench-pool: deps build k8s ## Warm pools: create-to-first-exec p50/p99 with a pool (claim) vs without (boot), local and kubernetes, vs agent-sandbox's warm claim p50 92 ms (needs root; DARKSHELL_BENCH_POOL_KUBE=0: local only)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) DARKSHELL_BENCH_RUNS=$${DARKSHELL_BENCH_RUNS:-100} $(GO) test -count=1 -run '^$$' -bench '^BenchmarkPool$$' -benchtime 1x -timeout 30m ./integration/

.PHONY: bench-podman
bench-podman: deps build ## podman driver: exec through the daemon API and a fresh CLI vs `podman exec` (needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) DARKSHELL_BENCH_RUNS=$${DARKSHELL_BENCH_RUNS:-200} $(GO) test -count=1 -run '^$$' -bench BenchmarkPodmanExec -benchtime 1x -timeout 20m ./integration/

.PHONY: bench-kube
bench-kube: deps build k8s ## kubernetes driver on the test cluster: exec p50 (daemon API, fresh CLI) vs kubectl exec; sync of the bench corpus vs kubectl cp (needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) DARKSHELL_BENCH_RUNS=$${DARKSHELL_BENCH_RUNS:-200} $(GO) test -count=1 -run '^$$' -bench BenchmarkKube -benchtime 1x -timeout 30m ./integration/

.PHONY: bench-mcp
bench-mcp: deps build ## MCP tools/call latency: bridge, in-sandbox, stdio shim vs direct stdio (local driver, needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) DARKSHELL_BENCH_RUNS=$${DARKSHELL_BENCH_RUNS:-1000} $(GO) test -count=1 -run '^$$' -bench BenchmarkMCP -benchtime 1x -timeout 20m ./integration/

.PHONY: bench-trace
bench-trace: build ## Tracing overhead (exec-heavy loop and a go build, tracing off vs on) and event loss at high exec rates (needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -run '^$$' -bench BenchmarkTrace -benchtime 1x -timeout 20m -v ./integration/

.PHONY: bench-blueprint
bench-blueprint: deps build ## Blueprint to ready (local driver): no uploads, two uploads, uploads + bridged MCP server + forward, vs the same separate commands (needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) DARKSHELL_BENCH_RUNS=$${DARKSHELL_BENCH_RUNS:-10} $(GO) test -count=1 -run '^$$' -bench BenchmarkBlueprint -benchtime 1x -timeout 20m ./integration/

.PHONY: bench-export
bench-export: deps build ## Export cost: exec p50 and a traced exec loop with every exporter on vs off (target < 2% added), events/s to OTLP (Jaeger) (needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) DARKSHELL_BENCH_RUNS=$${DARKSHELL_BENCH_RUNS:-300} $(GO) test -count=1 -run '^$$' -bench BenchmarkExport -benchtime 1x -timeout 30m ./integration/

.PHONY: bench-snapshot
bench-snapshot: build ## Snapshots: 2 GiB workspace snapshot/restore vs tar (time, stored bytes), store growth after a one-file change (local driver, needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -run '^$$' -bench BenchmarkSnapshot -benchtime 1x -timeout 30m ./integration/

.PHONY: bench-health
bench-health: build ## Health round trip of a local sandbox: daemon API and fresh CLI, beside an API exec (needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) DARKSHELL_BENCH_RUNS=$${DARKSHELL_BENCH_RUNS:-100} $(GO) test -count=1 -run '^$$' -bench BenchmarkHealth -benchtime 1x -timeout 20m ./integration/

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN) $(AGENTBIN)/sandboxd-*

.PHONY: bench-trace-stages
bench-trace-stages: build ## Where the exec loop's tracing overhead goes: attached only, process events only, a deferred reader, a live reader (needs root)
	DARKSHELL_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -run '^$$' -bench BenchmarkTracingStages -benchtime 1x -timeout 20m -v ./integration/
