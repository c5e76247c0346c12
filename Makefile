# rrjobs: a RoadRunner-compatible jobs plugin.
#   make run    build bin/rr and serve .rr.yaml.example (memory pipeline, PHP workers)
#   make test   unit tests (race detector) and end-to-end tests with real PHP workers
#   make bench  priority-queue and end-to-end benchmarks

GO        ?= go
BIN       := bin/rr
CORE_PKGS := . ./pq/... ./drivers/... ./cmd/...

.PHONY: all build run test deps fmt-check vet unit e2e bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/rr

run: build deps
	@echo "rr is starting with .rr.yaml.example (RPC on 127.0.0.1:6001). In another shell:"
	@echo "  php tests/php/producer.php 127.0.0.1:6001 push '{\"pipeline\":\"default\",\"payload\":{\"action\":\"ack\"}}'"
	@echo "  $(BIN) jobs stat -c .rr.yaml.example"
	./$(BIN) serve -c .rr.yaml.example

# deps installs and starts what the tests talk to on a fresh Debian machine (scripts/services.sh):
# php-cli, beanstalkd, the Pub/Sub emulator, and the machine's PostgreSQL, RabbitMQ and NATS.
deps:
	@bash scripts/services.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	cd tests && $(GO) vet ./...

unit: deps
	$(GO) test -race -count=1 $(CORE_PKGS)

e2e: deps
	cd tests && $(GO) test -count=1 -timeout 10m ./...

test: fmt-check vet unit e2e

# bench: the Go benchmarks, then this plugin side by side with the stock RoadRunner jobs plugin
# (bench/README.md): about 10 minutes, results in bench/results/latest.json. It first waits (up to
# 5 minutes) for the 1-minute load average to drop below BENCH_MAX_LOAD.
# QUICK=1: a smoke run of the comparison in under a minute (results/quick.json).
BENCH_MAX_LOAD ?= 1.0
bench: deps
	$(GO) test -run='^$$' -bench=. -benchmem $(if $(QUICK),-benchtime=100ms,) ./pq/
	cd tests && $(GO) test -run='^$$' -bench=. -benchmem -benchtime=3x ./...
	cd bench && $(GO) run . $(if $(QUICK),-quick,-wait-load $(BENCH_MAX_LOAD))

clean:
	rm -rf bin
