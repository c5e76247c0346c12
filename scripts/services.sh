#!/usr/bin/env bash
# services.sh makes sure everything the tests talk to is installed and listening, on a fresh Debian
# machine as on a developer's: php-cli (PHP workers), beanstalkd (127.0.0.1:11300), the Google
# Pub/Sub emulator (127.0.0.1:8085, shipped with gcloud) and the machine's PostgreSQL, RabbitMQ
# and NATS when they are installed but stopped. It is idempotent: what already runs is left alone.
set -uo pipefail

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
LOGDIR=${RRJOBS_SERVICES_LOG:-/tmp/rrjobs-services}
mkdir -p "$LOGDIR"

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_listening() { # host port name seconds
	for _ in $(seq 1 $(($4 * 10))); do
		listening "$1" "$2" && return 0
		sleep 0.1
	done
	echo "services: $3 did not start listening on $1:$2 within $4 s (logs in $LOGDIR)" >&2
	return 1
}

apt_updated=
apt_install() {
	if [ -z "$apt_updated" ]; then
		$SUDO apt-get update -qq >/dev/null && apt_updated=1
	fi
	echo "services: installing $*"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

command -v php >/dev/null 2>&1 || apt_install php-cli

if ! listening 127.0.0.1 11300; then
	command -v beanstalkd >/dev/null 2>&1 || apt_install beanstalkd
	echo "services: starting beanstalkd on 127.0.0.1:11300"
	setsid nohup beanstalkd -l 127.0.0.1 -p 11300 </dev/null >"$LOGDIR/beanstalkd.log" 2>&1 &
	wait_listening 127.0.0.1 11300 beanstalkd 10
fi

if ! listening 127.0.0.1 8085 && command -v gcloud >/dev/null 2>&1; then
	echo "services: starting the Pub/Sub emulator on 127.0.0.1:8085"
	setsid nohup gcloud beta emulators pubsub start --host-port=127.0.0.1:8085 --quiet \
		</dev/null >"$LOGDIR/pubsub.log" 2>&1 &
	wait_listening 127.0.0.1 8085 "pubsub emulator" 60
fi

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
	echo "services: starting the local PostgreSQL"
	pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

if ! listening 127.0.0.1 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
	echo "services: starting RabbitMQ"
	rabbitmq-server -detached || true
	wait_listening 127.0.0.1 5672 rabbitmq 60
fi

if ! listening 127.0.0.1 4222 && [ -x /usr/sbin/nats-server ]; then
	echo "services: starting NATS with JetStream"
	start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
		-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
	wait_listening 127.0.0.1 4222 nats 20
fi
exit 0
