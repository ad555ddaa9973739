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

# The release profile keeps line tables for useful backtraces, which makes the binary large.
# Installed: the binary without them (symbols stay, so backtraces still name functions), and the
# line tables in bin/.debug/labctl.debug, where Rust's backtraces find them through the
# binary's debuglink: `file:line` comes back whenever the .debug file is installed too.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
OBJCOPY    ?= objcopy

install: build
	install -d $(DESTDIR)$(PREFIX)/bin/.debug
	$(OBJCOPY) --only-keep-debug $(TARGET_DIR)/release/labctl $(DESTDIR)$(PREFIX)/bin/.debug/labctl.debug
	chmod 0644 $(DESTDIR)$(PREFIX)/bin/.debug/labctl.debug
	$(OBJCOPY) --strip-debug --add-gnu-debuglink=$(DESTDIR)$(PREFIX)/bin/.debug/labctl.debug \
		$(TARGET_DIR)/release/labctl $(DESTDIR)$(PREFIX)/bin/labctl.tmp
	chmod 0755 $(DESTDIR)$(PREFIX)/bin/labctl.tmp
	mv -f $(DESTDIR)$(PREFIX)/bin/labctl.tmp $(DESTDIR)$(PREFIX)/bin/labctl

bench: build
	benches/plan.sh
	benches/systemd.sh

clean:
	$(CARGO) clean
