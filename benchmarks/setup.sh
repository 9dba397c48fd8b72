#!/usr/bin/env bash
# Install the benchmark's comparison tools: restic, borgbackup, and GNU time (peak RSS).
set -euo pipefail

missing=()
command -v restic >/dev/null || missing+=(restic)
command -v borg >/dev/null || missing+=(borgbackup)
[ -x /usr/bin/time ] || missing+=(time)

if [ ${#missing[@]} -eq 0 ]; then
    echo "restic, borg and time are already installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet: update only when the install needs it.
if ! apt-get install -y "${missing[@]}"; then
    apt-get update
    apt-get install -y "${missing[@]}"
fi
restic version
borg --version
