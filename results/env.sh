#!/usr/bin/env bash
# Prints the environment record that goes beside every published result (env.txt):
# kernel, CPU model, cores, memory, commit, and the command given as arguments.
# Usage: bash results/env.sh "exact command" > results/<run>/env.txt
set -euo pipefail
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "kernel: $(uname -srm)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "cores: $(nproc)"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "commit: $(git -C "$(dirname "$0")/.." rev-parse HEAD 2>/dev/null || echo unknown)"
echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
echo "command: $*"
