# The two commands of the README: `make demo` (the main job) and `make test` (every test).
.PHONY: setup demo check test test-fast test-slow bench lab-demo clean

setup:
	@scripts/setup.sh

# A whole secure-mode deployment (1 Management + 3 Conferencing Nodes) against the simulated world.
demo: setup
	.venv/bin/orchestrator simulate --fresh --nodes $${NODES:-4} --latency $${LATENCY:-0.2}

# The same, with VMware's own vCenter simulator (vcsim) for the vSphere part: the run stops
# at the security-wizard gate (exit 3), is approved, and resumes to the end. `lab up --fresh`
# starts from an empty journal and world each time, so the demo passes twice in a row.
lab-demo: setup
	.venv/bin/orchestrator lab up --fresh
	.venv/bin/orchestrator -c .lab/orchestrator.toml run; test $$? -eq 3
	.venv/bin/orchestrator -c .lab/orchestrator.toml approve pexip-mgmt security_wizard --by "$${USER:-demo}" --reason "lab demo"
	.venv/bin/orchestrator -c .lab/orchestrator.toml resume --all

# The type checker (mypy --strict, config in pyproject.toml) and the linter and formatter (ruff).
check: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# The checks, then every test, the slow end-to-end ones included (CI runs this), on two workers
# (pytest-xdist; worksteal: a worker done early takes tests queued for the other).
test: check
	.venv/bin/pytest -q -ra -n 2 --dist worksteal

test-fast: setup
	.venv/bin/pytest -q -m "not slow"

test-slow: setup
	.venv/bin/pytest -q -m slow

# Every benchmark script, even after a miss; the misses are listed at the end (exit 1).
bench: setup
	@.venv/bin/pip install -q -e '.[test,bench]'  # dbos, for bench/dbos_bench.py
	@scripts/bench.sh

clean:
	rm -rf .lab simulation.*.sqlite* simulation.world.sqlite.d
