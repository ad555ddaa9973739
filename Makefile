# labctl lifecycle: build, test, lint, install.
PREFIX ?= /usr/local
CARGO  ?= cargo

.PHONY: build test lint fmt install bench clean

build:
	$(CARGO) build --release

test:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

install: build
	install -D -m 0755 target/release/labctl $(DESTDIR)$(PREFIX)/bin/labctl

bench: build
	benches/plan.sh
	benches/systemd.sh

clean:
	$(CARGO) clean
