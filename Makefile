# The two commands of the quick start:
#   make demo   # end-to-end main job on small defaults (creates/reuses .venv)
#   make test   # the test suite (creates/reuses .venv)
.PHONY: install install-gpu demo demo-fast demo-large demo-smoke demo-sweep test lint typecheck bench lock drift

install:
	bash scripts/install.sh

# flash-attn for the `gpu` extra: CUDA machines only (a CUDA build of torch + nvcc); builds from source, after torch
install-gpu: install
	bash scripts/install_flash_attn.sh

demo: install
	.venv/bin/python scripts/demo.py $(ARGS)

demo-fast: install
	.venv/bin/python scripts/demo.py --preset fast $(ARGS)

demo-large: install
	.venv/bin/python scripts/demo.py --preset large $(ARGS)

demo-smoke: install
	.venv/bin/python scripts/demo.py --preset smoke --out runs/demo-smoke $(ARGS)

demo-sweep: install
	.venv/bin/python scripts/demo.py --preset sweep --out runs/demo-sweep $(ARGS)

test: install
	.venv/bin/python -m pytest -n 2 --dist loadfile -q $(ARGS)

# ruff (style), then mypy (types: what `make typecheck` runs)
lint: install
	.venv/bin/ruff check tokenizer trajvlm scripts eval tests
	.venv/bin/ruff format --check tokenizer trajvlm scripts eval tests
	.venv/bin/mypy

# mypy over the library packages (tokenizer/trajtok, trajvlm), configured in pyproject.toml's [tool.mypy]
typecheck: install
	.venv/bin/mypy

# Regenerate the CPU lock (constraints.txt) from the declared ranges with uv's resolver.
lock:
	bash scripts/lock.sh

# Not part of CI: install the newest versions the declared ranges allow into a scratch environment, run the tests
# there, and print which packages moved and what broke.
drift:
	bash scripts/drift_check.sh $(ARGS)
