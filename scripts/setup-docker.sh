#!/bin/sh
# Make `docker info` work on this machine, idempotently (quiet when the engine already answers).
#   - installs Debian's docker.io (apt-get update first: fresh machines have stale or empty lists)
#   - starts dockerd in the background when no engine answers (there is no systemd here);
#     its log goes to $SANLAB_DOCKERD_LOG (default /var/log/sanlab-dockerd.log)
#   - waits, bounded ($SANLAB_DOCKER_WAIT seconds, default 60), until `docker info` works
# Also installs mmdebstrap, which builds the lab's images (no image registry is reachable here).
# Same behaviour as lab.images.docker_setup.ensure_docker() (used by `sanlab images build` / `sanlab up`).
set -eu
LOG=${SANLAB_DOCKERD_LOG:-/var/log/sanlab-dockerd.log}
WAIT=${SANLAB_DOCKER_WAIT:-60}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need=""
command -v dockerd >/dev/null 2>&1 || need="$need docker.io"
command -v mmdebstrap >/dev/null 2>&1 || need="$need mmdebstrap"
if [ -n "$need" ]; then
  echo "setup-docker: installing Debian packages:$need"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

docker info >/dev/null 2>&1 && exit 0

if ! pgrep -x dockerd >/dev/null 2>&1; then
  echo "setup-docker: starting dockerd (log: $LOG)"
  $SUDO mkdir -p "$(dirname "$LOG")"
  # setsid + nohup: the engine outlives this shell and the make run that started it
  $SUDO sh -c "setsid nohup dockerd >>'$LOG' 2>&1 </dev/null &"
fi
i=0
while [ "$i" -lt "$((WAIT * 2))" ]; do
  if docker info >/dev/null 2>&1; then
    echo "setup-docker: docker engine ready ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
    exit 0
  fi
  sleep 0.5; i=$((i + 1))
done
echo "setup-docker: docker info still fails after ${WAIT}s; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2 2>/dev/null || true
exit 1
