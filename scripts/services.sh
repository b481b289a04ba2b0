#!/usr/bin/env bash
# Make sure the real Redis and RabbitMQ on loopback are up; start them if not; fail clearly if they cannot be.
set -u
redis_up() { python3 - <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", 6379), timeout=1); s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
rabbit_up() { python3 -c "import socket; socket.create_connection(('127.0.0.1', 5672), timeout=1)" 2>/dev/null; }

if ! redis_up; then
  echo "services: starting redis-server" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do redis_up && break; sleep 0.2; done
fi
if ! rabbit_up; then
  echo "services: starting rabbitmq-server" >&2
  rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 150); do rabbit_up && break; sleep 0.4; done
fi
ok=0
redis_up || { echo "services: Redis is not reachable on 127.0.0.1:6379 and could not be started (is redis-server installed?)" >&2; ok=1; }
rabbit_up || { echo "services: RabbitMQ is not reachable on 127.0.0.1:5672 and could not be started (is rabbitmq-server installed?)" >&2; ok=1; }
exit $ok
