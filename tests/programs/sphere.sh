#!/bin/sh
# Sphere of the arguments, for tests/test_command.py (awk parses and prints doubles exactly).
echo "sphere.sh in $(pwd)" >&2
awk 'BEGIN { s = 0; for (i = 1; i < ARGC; i++) s += ARGV[i] * ARGV[i]; printf "%.17g\n", s }' "$@"
