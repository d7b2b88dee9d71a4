#!/usr/bin/env bash
# Runs every benchmark script, even after one misses a target, then lists the misses.
# A script reports a miss by exiting non-zero or by printing MISSED / "NOT MET".
set -u
cd "$(dirname "$0")/.."
misses=()
for script in bench/*_bench.py; do
  echo "== $script"
  out=$(mktemp)
  .venv/bin/python "$script" 2>&1 | tee "$out"
  code=${PIPESTATUS[0]}
  if [ "$code" -ne 0 ] || grep -qE "MISSED|NOT MET" "$out"; then
    misses+=("$script (exit $code): $(grep -E 'MISSED|NOT MET' "$out" | head -3 | tr '\n' ' ')")
  fi
  rm -f "$out"
done
echo
if [ ${#misses[@]} -eq 0 ]; then
  echo "bench: every target met"
  exit 0
fi
echo "bench: ${#misses[@]} script(s) missed a target:"
printf -- '- %s\n' "${misses[@]}"
exit 1
