# layerfs: set up, demo, test. `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
PYTHON ?= /usr/bin/python3
VENV ?= .venv
# What building and running layerfs needs.
RUN_PACKAGES = fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv
# What the tests build images with and compare against (and a registry to pull from).
TEST_PACKAGES = attr fuse-overlayfs uidmap umoci skopeo docker.io containerd podman docker-registry \
                apache2-utils openssl tmux
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# `make install`: the commands on PATH, as symlinks into the venv (the checkout stays
# where it is): ~/.local/bin for a user, /usr/local/bin as root; BINDIR=... overrides.
BINDIR ?= $(shell [ "$$(id -u)" = 0 ] && echo /usr/local/bin || echo $$HOME/.local/bin)
COMMANDS = layerfs layerfs-overlay

.PHONY: setup test-setup system-packages demo test man clean install uninstall

setup: APT_PACKAGES = $(RUN_PACKAGES)
setup: system-packages $(VENV)/.installed

test-setup: APT_PACKAGES = $(RUN_PACKAGES) $(TEST_PACKAGES)
test-setup: system-packages $(VENV)/.installed

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# The tests start docker-registry themselves, on loopback: not as a system service.
	@if [ -d /run/systemd/system ] && systemctl is-enabled docker-registry >/dev/null 2>&1; then \
	    $(SUDO) systemctl disable --now docker-registry >/dev/null 2>&1 || true; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

install: setup
	@mkdir -p $(BINDIR)
	@for c in $(COMMANDS); do ln -sfn $(abspath $(VENV))/bin/$$c $(BINDIR)/$$c; \
	    echo "$(BINDIR)/$$c -> $(abspath $(VENV))/bin/$$c"; done
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; \
	    *) echo "note: $(BINDIR) is not on your PATH; add it (e.g. in ~/.profile)";; esac

uninstall:
	@for c in $(COMMANDS); do \
	    if [ "$$(readlink $(BINDIR)/$$c)" = "$(abspath $(VENV))/bin/$$c" ]; then \
	        rm -f $(BINDIR)/$$c && echo "removed $(BINDIR)/$$c"; fi; done

demo: setup
	examples/demo.sh $(VENV)/bin/layerfs

test: test-setup
	$(VENV)/bin/python -m pytest -q -ra tests

# layerfs(1), generated from the command line parser.
man: setup
	$(VENV)/bin/layerfs man > layerfs.1

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis layerfs.1
