# labctl lifecycle: build, test, lint, install.
PREFIX ?= /usr/local
CARGO  ?= cargo

.PHONY: build test lint fmt install bench clean static image

build:
	$(CARGO) build --release

# The test suite. tests/it/image.rs packs the static binary of the build under test, which after the
# debug build is one more link (see `static`).
test:
	$(CARGO) build --workspace
	$(MAKE) static IMAGE_PROFILE=dev
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

# The image the collectors DaemonSet runs: `Containerfile` over a statically linked labctl, built
# by buildah (vfs storage, no daemon, no registry) into an OCI archive for `k3s ctr images import`.
# IMAGE must stay the default of `stack.labctl_image` (src/stack/schema.rs).
# IMAGE_PROFILE=dev packs a debug build (CI: one link after its test build, see README).
VERSION       := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE         ?= localhost/labctl:$(VERSION)
IMAGE_PROFILE ?= release
IMAGE_ARCHIVE ?= labctl.tar
TARGET_DIR    := $(or $(CARGO_TARGET_DIR),target)
PROFILE_BIN   := $(TARGET_DIR)/$(if $(filter dev test,$(IMAGE_PROFILE)),debug,$(IMAGE_PROFILE))/labctl
STATIC_BIN    := $(TARGET_DIR)/static/$(IMAGE_PROFILE)/labctl
IMAGE_WORK    ?= $(TARGET_DIR)/image
# IMAGE_DEPS= packs the static binary already built, without cargo (tests/it/image.rs).
IMAGE_DEPS    ?= static
BUILDAH       := buildah --storage-driver vfs --root $(IMAGE_WORK)/storage --runroot $(IMAGE_WORK)/run

# glibc linked in statically (`+crt-static`), passed to the final link only (`cargo rustc`): the
# profile's dependencies are reused as built (libc's `#[link(cfg(target_feature = "crt-static"))]`
# is decided at that link), so after a build of the same profile this costs one link.
# `relocation-model=static` links a fixed-address executable, as Go links node_exporter, instead of
# a static PIE: a PIE relocates itself at every start, reading ~1 MB of relocations and writing a
# private copy of its ~0.7 MB of pointer tables, which stay resident (benches/collector.sh). The
# image's process gives up ASLR of its own code for that; its stack, heap and mappings keep theirs.
static:
	$(CARGO) rustc --quiet --profile $(IMAGE_PROFILE) --bin labctl -- \
		-C target-feature=+crt-static -C relocation-model=static
	mkdir -p $(dir $(STATIC_BIN)) && cp $(PROFILE_BIN) $(STATIC_BIN)
	@echo "static: $(STATIC_BIN)"

image: $(IMAGE_DEPS)
	rm -rf $(IMAGE_WORK)/context && mkdir -p $(IMAGE_WORK)/context
	cp $(STATIC_BIN) $(IMAGE_WORK)/context/labctl
	$(BUILDAH) build --quiet --file Containerfile --tag $(IMAGE) $(IMAGE_WORK)/context >/dev/null
	rm -f $(IMAGE_ARCHIVE)
	$(BUILDAH) push --quiet $(IMAGE) oci-archive:$(IMAGE_ARCHIVE):$(IMAGE)
	$(BUILDAH) rmi --force $(IMAGE) >/dev/null
	@echo "$(IMAGE) -> $(IMAGE_ARCHIVE)"
