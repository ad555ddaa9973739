# labctl lifecycle: build, test, lint, install.
PREFIX ?= /usr/local
CARGO  ?= cargo

.PHONY: build test lint fmt install bench clean static image

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

# The image the collectors DaemonSet runs: `Containerfile` over a statically linked labctl, built
# by buildah (vfs storage, no daemon, no registry) into an OCI archive for `k3s ctr images import`.
# IMAGE must stay the default of `stack.labctl_image` (src/stack/schema.rs).
# IMAGE_PROFILE=dev builds a debug static binary; IMAGE_BIN=path packs a static binary already
# built (CI: the one its static test build made, see README).
VERSION       := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE         ?= localhost/labctl:$(VERSION)
IMAGE_PROFILE ?= release
IMAGE_ARCHIVE ?= labctl.tar
STATIC_TARGET ?= x86_64-unknown-linux-gnu
TARGET_DIR    := $(or $(CARGO_TARGET_DIR),target)
STATIC_BIN    := $(TARGET_DIR)/$(STATIC_TARGET)/$(if $(filter dev test,$(IMAGE_PROFILE)),debug,$(IMAGE_PROFILE))/labctl
IMAGE_WORK    ?= $(TARGET_DIR)/image
BUILDAH       := buildah --storage-driver vfs --root $(IMAGE_WORK)/storage --runroot $(IMAGE_WORK)/run
ifeq ($(origin IMAGE_BIN),undefined)
IMAGE_BIN     := $(STATIC_BIN)
IMAGE_DEPS    := static
endif

# `--target` keeps the flag off build scripts and proc macros, which must stay dynamic.
static:
	RUSTFLAGS="$(RUSTFLAGS) -C target-feature=+crt-static" \
		$(CARGO) build --profile $(IMAGE_PROFILE) --target $(STATIC_TARGET) --bin labctl

image: $(IMAGE_DEPS)
	rm -rf $(IMAGE_WORK)/context && mkdir -p $(IMAGE_WORK)/context
	cp $(IMAGE_BIN) $(IMAGE_WORK)/context/labctl
	$(BUILDAH) build --quiet --file Containerfile --tag $(IMAGE) $(IMAGE_WORK)/context >/dev/null
	rm -f $(IMAGE_ARCHIVE)
	$(BUILDAH) push --quiet $(IMAGE) oci-archive:$(IMAGE_ARCHIVE):$(IMAGE)
	$(BUILDAH) rmi --force $(IMAGE) >/dev/null
	@echo "$(IMAGE) -> $(IMAGE_ARCHIVE)"
