# sRPC: the two entry points are `make demo` (the main job) and `make test`.
CARGO ?= cargo

.PHONY: deps build test lint fmt fuzz demo bench policy policy-test vm-test vm-demo \
	release man man-check install install-selinux dist rpm rpm-deps

deps:
	./scripts/install-deps

build: deps
	$(CARGO) build --workspace --all-targets

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Format and lint first (cheap, and clippy shares the build with the tests).
# The binaries first: srpcd's tests run srpcctl, another package's binary, which
# `cargo test` does not build for them.
test: lint policy-test
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	$(MAKE) man-check

# The SELinux policy module (policy-module/, docs/selinux.md): build srpcd.pp.
policy: deps
	$(MAKE) -C policy-module

# selint, then the policy decision tests: the module and the example module linked
# into a copy of the installed policy store, decisions asked offline (no SELinux
# kernel needed).
policy-test: deps
	$(MAKE) -C policy-module test

# The main job: srpcd serving a demo tree that a client calls (root).
demo:
	./scripts/demo

# End to end under Debian 12's SELinux policy, enforcing, in a qemu VM (root;
# builds or reuses a cached image in /var/cache/srpc-vm; see vm-tests/README.md).
vm-test:
	./vm-tests/vm-test test

# The demo's story inside the enforcing VM: contexts beside uids, bob's AVC.
vm-demo:
	./vm-tests/vm-test demo

# Figures, not a test: echo calls through srpcd against a direct Unix socket (root).
bench:
	./scripts/bench

fmt:
	$(CARGO) fmt --all

# 1,000,000 executions per target (cargo install cargo-fuzz first; see fuzz/README.md).
fuzz:
	cd fuzz && ./seed-from-spec.sh
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode_frame -- -runs=1000000 -print_final_stats=1
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run roundtrip -- -runs=1000000 -print_final_stats=1
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run deframer -- -runs=1000000 -print_final_stats=1
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ipc_to_monitor -- -runs=1000000 -print_final_stats=1

# ---------------------------------------------------------------------------
# Installation and packaging (docs/admin-guide.md; rpm/srpc.spec uses these).
# The layout is the SELinux contract's (policy-module/srpcd.fc): srpcd and its
# helpers must be where the file contexts say, so PREFIX defaults to /usr.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
PREFIX ?= /usr
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBEXECDIR ?= $(PREFIX)/libexec
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DBUSPOLICYDIR ?= $(DATADIR)/dbus-1/system.d
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
SRVDIR ?= /srv
INSTALL ?= install
# Extra cargo flags for the release build (the spec passes --offline --frozen).
CARGO_RELEASE_FLAGS ?=

# Parts other issues add: installed when they are in the tree.
HAVE_SRPCCTL := $(wildcard srpcctl/Cargo.toml)
HAVE_UNIT := $(wildcard dist/systemd/srpcd.service)
HAVE_DBUS := $(wildcard dist/dbus/org.srpc.Srpcd1.conf)
RELEASE_PKGS := -p srpcd -p srpc $(if $(HAVE_SRPCCTL),-p srpcctl)
RELEASE := target/release
MAN_PAGES := $(patsubst docs/man/%.md,target/man/%,$(wildcard docs/man/*.[1-8].md))

release:
	$(CARGO) build --release --bins $(CARGO_RELEASE_FLAGS) $(RELEASE_PKGS)

# The installed roff pages, made from docs/man/*.md at build time (scripts/md2man).
man: $(MAN_PAGES)

target/man/%: docs/man/%.md scripts/md2man
	@mkdir -p target/man
	./scripts/md2man --version $(VERSION) $< > $@.tmp && mv $@.tmp $@

# The shipped /etc/srpc/srpcd.toml: srpcd.toml(5)'s defaults, every line commented
# out (so a later release's defaults apply to what the admin left alone).
target/srpcd.toml: docs/man/srpcd.toml.5.md
	@mkdir -p target
	{ echo "# srpcd's configuration: srpcd.toml(5). Every key is optional; the lines below"; \
	  echo "# show the defaults. Uncomment and change what you need, then"; \
	  echo "# \`systemctl reload srpcd\` (listen and [tree] need a restart)."; echo; \
	  sed -n '/^```toml$$/,/^```$$/p' $< | sed '1d;$$d' | sed 's/^\(.\)/# \1/'; \
	} > $@

# Every page converts cleanly, and every flag of every binary's --help and every
# config key is in its page (the config keys: srpcd/tests/man_config_keys.rs).
man-check: man
	$(CARGO) build --bins $(RELEASE_PKGS)
	./scripts/check-man target/debug docs/man target/man

install: release man target/srpcd.toml
	$(INSTALL) -D -m 0755 $(RELEASE)/srpcd $(DESTDIR)$(SBINDIR)/srpcd
	$(INSTALL) -D -m 0755 $(RELEASE)/srpc $(DESTDIR)$(BINDIR)/srpc
	$(INSTALL) -d -m 0755 $(DESTDIR)$(LIBEXECDIR)/srpc
	for b in srpc-launch srpc-front srpc-worker; do \
		$(INSTALL) -m 0755 $(RELEASE)/$$b $(DESTDIR)$(LIBEXECDIR)/srpc/$$b || exit 1; done
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/srpc
	$(INSTALL) -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/srpc/tls
	[ -e $(DESTDIR)$(SYSCONFDIR)/srpc/srpcd.toml ] || \
		$(INSTALL) -m 0644 target/srpcd.toml $(DESTDIR)$(SYSCONFDIR)/srpc/srpcd.toml
	[ -e $(DESTDIR)$(SYSCONFDIR)/pam.d/srpcd ] || \
		$(INSTALL) -D -m 0644 dist/pam.d/srpcd $(DESTDIR)$(SYSCONFDIR)/pam.d/srpcd
	$(INSTALL) -D -m 0644 dist/systemd/srpcd.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/srpcd.conf
	$(INSTALL) -D -m 0644 dist/systemd/srpcd.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/srpcd.conf
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SRVDIR)/srpc
	for p in $(MAN_PAGES); do \
		s=$${p##*.}; $(INSTALL) -D -m 0644 $$p $(DESTDIR)$(MANDIR)/man$$s/$${p##*/} || exit 1; done
ifneq ($(HAVE_SRPCCTL),)
	$(INSTALL) -D -m 0755 $(RELEASE)/srpcctl $(DESTDIR)$(BINDIR)/srpcctl
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(RELEASE)/srpcctl completions bash > $(DESTDIR)$(BASHCOMPDIR)/srpcctl
	$(RELEASE)/srpcctl completions zsh > $(DESTDIR)$(ZSHCOMPDIR)/_srpcctl
	$(RELEASE)/srpcctl completions fish > $(DESTDIR)$(FISHCOMPDIR)/srpcctl.fish
endif
ifneq ($(HAVE_UNIT),)
	$(INSTALL) -D -m 0644 dist/systemd/srpcd.service $(DESTDIR)$(UNITDIR)/srpcd.service
endif
ifneq ($(HAVE_DBUS),)
	$(INSTALL) -D -m 0644 dist/dbus/org.srpc.Srpcd1.conf $(DESTDIR)$(DBUSPOLICYDIR)/org.srpc.Srpcd1.conf
endif

# The SELinux module (bzip2), its port module and srpcd.if, where Fedora's
# selinux packaging puts them (policy-module/Makefile builds them).
install-selinux:
	$(MAKE) -C policy-module install DESTDIR=$(DESTDIR) SHAREDIR=$(DATADIR)/selinux INTERFACE_LAYER=distributed

# Source and vendored-crates tarballs for an offline build (rpm/srpc.spec):
# target/dist/srpc-VERSION.tar.gz (git archive of HEAD: commit first),
# target/dist/srpc-VERSION-vendor.tar.gz (cargo vendor of Cargo.lock) and
# target/dist/srpc-VERSION-crates.txt, `NAME VERSION` of every crate vendored
# (Cargo.lock's registry packages), from which the spec writes its
# `Provides: bundled(crate(NAME)) = VERSION` lines.
DIST := target/dist
dist:
	@mkdir -p $(DIST)
	awk '/^\[\[package\]\]/ { n = ""; v = "" } /^name = / { n = $$3 } /^version = / { v = $$3 } \
		/^source = "registry\+/ { gsub(/"/, "", n); gsub(/"/, "", v); print n, v }' Cargo.lock | \
		LC_ALL=C sort -u > $(DIST)/srpc-$(VERSION)-crates.txt
	@[ -s $(DIST)/srpc-$(VERSION)-crates.txt ] || { echo "make dist: no registry crate in Cargo.lock?" >&2; exit 1; }
	git archive --format=tar.gz --prefix=srpc-$(VERSION)/ -o $(DIST)/srpc-$(VERSION).tar.gz HEAD
	rm -rf $(DIST)/vendor-tmp && mkdir -p $(DIST)/vendor-tmp
	$(CARGO) vendor --locked --versioned-dirs $(DIST)/vendor-tmp/vendor > /dev/null
	tar -C $(DIST)/vendor-tmp --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime=@0 -czf $(DIST)/srpc-$(VERSION)-vendor.tar.gz vendor
	rm -rf $(DIST)/vendor-tmp

# Binary RPMs on this machine (Debian's rpmbuild: --nodeps, its rpm database is
# empty), then rpmlint. Parts not yet in the tree are built --without (the spec's
# bconds): selinux without policy-module/, unit without dist/systemd/srpcd.service.
# The build tree is removed after each run; the RPMs stay in target/rpm/RPMS.
RPM_TOP := $(CURDIR)/target/rpm
SELINUXTYPE ?= $(or $(shell sed -n 's/^SELINUXTYPE=//p' /etc/selinux/config 2>/dev/null),targeted)
RPMBUILD_FLAGS ?=
RPM_BCONDS := $(if $(wildcard policy-module/Makefile),,--without selinux) \
	$(if $(HAVE_UNIT),,--without unit) $(if $(HAVE_SRPCCTL),,--without srpcctl) \
	$(if $(HAVE_DBUS),,--without dbus)
rpm: rpm-deps dist
	rm -rf $(RPM_TOP)/BUILD $(RPM_TOP)/BUILDROOT $(RPM_TOP)/RPMS $(RPM_TOP)/SRPMS
	mkdir -p $(RPM_TOP)/SOURCES
	cp $(DIST)/srpc-$(VERSION).tar.gz $(DIST)/srpc-$(VERSION)-vendor.tar.gz \
		$(DIST)/srpc-$(VERSION)-crates.txt dist/systemd/srpcd.sysusers.conf $(RPM_TOP)/SOURCES/
	rpmbuild -bb --nodeps --clean --define "_topdir $(RPM_TOP)" \
		--define "selinuxtype $(SELINUXTYPE)" $(RPM_BCONDS) $(RPMBUILD_FLAGS) rpm/srpc.spec; \
		rc=$$?; rm -rf $(RPM_TOP)/BUILD $(RPM_TOP)/BUILDROOT $(RPM_TOP)/SOURCES; exit $$rc
	rpmlint -c rpm/rpmlint.toml $(RPM_TOP)/RPMS/*/*.rpm rpm/srpc.spec

rpm-deps:
	./scripts/install-deps --rpm
