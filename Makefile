# The two README commands. Both create .venv (Python 3.11) when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# What `make demo` needs: the base install (no TensorFlow). What `make test` needs on top: pytest, and TensorFlow,
# since tests build TFDS's official imagenet2012 (the `tfds` extra).
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The tested set of versions: CI and `make install` get exactly these (`make constraints` refreshes them).
CONSTRAINTS := constraints.txt
# Under CI (CI set, not 0/false) what the tests need must be there: no skipping (tests/conftest.py: require).
STRICT := $(if $(filter-out 0 false False FALSE,$(CI)),1,)

.PHONY: demo test install clean browser constraints

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): setup.py $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e .
	touch $(STAMP)

$(TEST_STAMP): setup.py $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test,tfds]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m zoomjax.main --config configs/demo.py --workdir runs/demo

# The report test renders report.html in headless Chromium (Debian package); installed when we are root.
# Under CI a missing chromium is an error; locally the render tests are skipped.
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || true
	@command -v chromium || command -v chromium-browser || command -v google-chrome || \
	  { if [ -n "$(STRICT)" ]; then \
	      echo "error: chromium is required under CI (CI=$(CI)); install it: apt-get install -y chromium" >&2; \
	      exit 1; \
	    fi; \
	  echo "chromium not found (apt-get install -y chromium): the report rendering tests will be skipped"; }

# One pytest worker per core of CI's 2 (TEST_WORKERS=N to change); a file's tests stay on one worker, so that its
# module fixtures (fast compiles, a study built once) are built once. Ends with the 20 slowest tests.
TEST_WORKERS ?= 2
test: $(TEST_STAMP) browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20 tests

# Re-resolves the newest versions setup.py allows in a throwaway venv (no -c) and writes them to constraints.txt;
# then run `make test` and commit setup.py + constraints.txt together.
CVENV := $(or $(TMPDIR),/tmp)/zoomjax-constraints-venv
constraints:
	rm -rf $(CVENV)
	$(PYTHON) -m venv $(CVENV)
	$(CVENV)/bin/pip install --quiet --upgrade pip
	$(CVENV)/bin/pip install --quiet -e '.[test,tfds]'
	{ sed -n '/^#/!q;p' $(CONSTRAINTS); $(CVENV)/bin/pip freeze --exclude-editable | grep -iv '^zoomjax[= ]'; } \
	  > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(CVENV)
	@echo "wrote $(CONSTRAINTS); now run make test"

clean:
	rm -rf $(VENV) runs
