# Developer entry points.  `make test` runs the whole test suite (lint + pytest);
# CI runs it via .ci/run.  Pass pytest options with PYTEST_ARGS='-k lock -x', demo options
# with DEMO_ARGS='--hold 60'.

PYTHON      ?= python3
VENV        := .venv
CLUSTER_DIR ?= $(CURDIR)/.data/redis-cluster
# Test processes: most tests wait on servers, so three share two cores well.
TEST_WORKERS ?= 3

.PHONY: venv lint test screenshots run demo cluster-up cluster-down

# htmx for the dashboard, from the npm registry (git-ignored; packaged into the wheel).
HTMX_VERSION := 2.0.11
HTMX := src/community_ade/dashboard/static/vendor/htmx.min.js

venv: $(VENV)/.installed $(HTMX)

$(HTMX):
	mkdir -p $(@D)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack --silent htmx.org@$(HTMX_VERSION) >/dev/null && \
	   tar -xzf htmx.org-$(HTMX_VERSION).tgz package/dist/htmx.min.js) && \
	  cp "$$tmp/package/dist/htmx.min.js" $@

# Re-install only when pyproject.toml is newer than the stamp.
$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev,bench,examples]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: venv lint
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# Refresh the README's dashboard screenshots (docs/img/) from a real browser.
screenshots: venv
	ADE_UPDATE_SCREENSHOTS=1 $(VENV)/bin/pytest -q tests/e2e/test_dashboard.py -k readme_screenshots

run: venv
	$(VENV)/bin/ade serve --demo $(SERVE_ARGS)

demo: venv
	$(VENV)/bin/ade demo $(DEMO_ARGS)

# Prints the cluster URL, e.g. for ADE_TEST_REDIS_CLUSTER_URL.
cluster-up:
	@bash .ci/redis-cluster start $(CLUSTER_DIR)

cluster-down:
	@bash .ci/redis-cluster stop $(CLUSTER_DIR)
