#!/usr/bin/env bash
# A throw-away three-master Redis Cluster on 127.0.0.1:7101-7103 for tests/redis_cluster.rs.
#   tests/support/redis-cluster.sh start   # idempotent: does nothing if the cluster is up and ok
#   tests/support/redis-cluster.sh stop
# No replicas and no persistence: the tests need the slots spread over three nodes, not
# durability. Node files live in $REDIS_CLUSTER_DIR (default: a directory under /tmp).
set -euo pipefail

PORTS=(7101 7102 7103)
DIR="${REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/login-manager-redis-cluster}"

cli() { redis-cli -h 127.0.0.1 -p "$@"; }
up() { cli "$1" ping >/dev/null 2>&1; }
# Ok means every node says so and knows all three: a node that was reset alone still sees
# the others' old view as ok for a while, so asking one node is not enough.
cluster_ok() {
  local p info
  for p in "${PORTS[@]}"; do
    info=$(cli "$p" cluster info 2>/dev/null) || return 1
    grep -q '^cluster_state:ok' <<<"$info" && grep -q "^cluster_known_nodes:${#PORTS[@]}" <<<"$info" || return 1
  done
}

start() {
  # Already running and healthy (e.g. a second `start`, or CI started it): leave it alone.
  if cluster_ok; then echo "redis cluster already ok on ${PORTS[*]}"; return; fi
  mkdir -p "$DIR"
  for p in "${PORTS[@]}"; do
    if up "$p"; then
      # Up but not an ok cluster (half-created, or left from an older run): wipe it, as
      # `--cluster create` refuses nodes that hold keys or already know other nodes.
      cli "$p" flushall >/dev/null
      cli "$p" cluster reset hard >/dev/null
    else
      # A node file left by a node that died without `stop` would make it rejoin the old
      # cluster, which `--cluster create` refuses: start from none.
      rm -f "$DIR/nodes-$p.conf"
      redis-server --port "$p" --cluster-enabled yes --cluster-config-file "$DIR/nodes-$p.conf" \
        --daemonize yes --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
        --logfile "$DIR/redis-$p.log"
    fi
  done
  for p in "${PORTS[@]}"; do
    for _ in $(seq 50); do up "$p" && break; sleep 0.1; done
    up "$p" || { echo "redis-server on $p did not start (see $DIR/redis-$p.log)" >&2; exit 1; }
  done
  redis-cli --cluster create "${PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
  # The slots are assigned at once, but the nodes agree on the state through gossip: wait.
  for _ in $(seq 100); do cluster_ok && break; sleep 0.1; done
  cluster_ok || { echo "cluster did not reach cluster_state:ok" >&2; exit 1; }
  echo "redis cluster ok on ${PORTS[*]}"
}

stop() {
  for p in "${PORTS[@]}"; do
    # `nosave`: nothing is persisted anyway; a node that is not running is fine.
    cli "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  # The node files would make a restarted node remember the old cluster: remove them.
  rm -f "$DIR"/nodes-*.conf
  echo "redis cluster stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
