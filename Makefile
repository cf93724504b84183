# layerfs: set up, demo, test. `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
PYTHON ?= /usr/bin/python3
VENV ?= .venv
# Build and run needs; the rest are the references the tests compare against.
APT_PACKAGES = fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv attr \
               fuse-overlayfs umoci skopeo docker.io podman
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages demo test clean

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

demo: setup
	examples/demo.sh $(VENV)/bin/layerfs

test: setup
	$(VENV)/bin/python -m pytest -q -ra tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
