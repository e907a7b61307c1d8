# The two README commands. Both create .venv (Python 3.11) when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean browser

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m zoomjax.main --config configs/demo.py --workdir runs/demo

# The report test renders report.html in headless Chromium (Debian package); installed when we are root.
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium could not be installed: the report rendering test will be skipped"

test: $(STAMP) browser
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs
