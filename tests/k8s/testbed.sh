#!/usr/bin/env bash
# Spillway's Kubernetes test bed: a real kube-apiserver on a real etcd, plus real kubectl and
# helm, built from the official Go modules at pinned versions (no container engine, no kind),
# started on loopback ports with self-generated certificates the way controller-runtime's
# envtest does it.
#
#   testbed.sh build          build the binaries once into the cache (idempotent, locked)
#   testbed.sh start  [DIR]   fresh etcd + kube-apiserver; admin kubeconfig at DIR/kubeconfig
#   testbed.sh stop   [DIR]   stop the processes started in DIR (and only those)
#   testbed.sh env    [DIR]   print `export KUBECONFIG=… PATH=…` lines: eval "$(testbed.sh env)"
#   testbed.sh status [DIR]   pinned versions, cached binaries, processes; exit 0 iff ready
#
# DIR defaults to $SPILLWAY_K8S_DIR or ${TMPDIR:-/tmp}/spillway-k8s-testbed. Binaries live in
# ${SPILLWAY_K8S_CACHE:-$HOME/.cache/spillway/k8s}/<versions>/bin, outside the repository.
# Needs Go >= MIN_GO (build.sh, which also holds the pinned versions) and openssl (installed with apt-get when missing and root).
#
# What this is NOT: there is no kubelet, scheduler or controller-manager. So:
#   - Pods are stored (after admission, including mutating webhooks) but never scheduled or run;
#     Deployments/ReplicaSets/Jobs never create Pods.
#   - Namespaces are not garbage-collected: a deleted namespace stays `Terminating` with its
#     contents; ownerReference garbage collection does not happen either.
#   - No ServiceAccount controller: new namespaces get no `default` ServiceAccount, and the
#     ServiceAccount admission plugin is disabled so Pods are accepted without one. Tokens still
#     work through the TokenRequest API (`kubectl create token`), signed with DIR/pki/sa.key.
#   - No Service/EndpointSlice controllers, no node lifecycle, no CSR signing.
# Every `start` creates a new, empty cluster in DIR (previous etcd data there is discarded).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=build.sh
. "$HERE/build.sh"
DEFAULT_DIR=${SPILLWAY_K8S_DIR:-${TMPDIR:-/tmp}/spillway-k8s-testbed}
READY_TIMEOUT=${SPILLWAY_K8S_READY_TIMEOUT:-60}

# ---- start / stop -------------------------------------------------------------------------------

# Absolute DIR (default DEFAULT_DIR); only `start` creates it.
run_dir() {
  realpath -m -- "${1:-$DEFAULT_DIR}"
}

# Alive and not a zombie.
alive() {
  local state
  [[ -r /proc/$1/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# PID of NAME started in DIR, if that process is still ours: its executable is NAME and its
# command line mentions DIR (guards against a recycled PID).
our_pid() { # dir name
  local pidf="$1/$2.pid" pid exe
  [[ -r "$pidf" ]] || return 1
  pid=$(<"$pidf")
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)} # the binary was rebuilt or removed since
  [[ "${exe##*/}" == "$2" ]] || return 1
  [[ "$(tr '\0' '\n' <"/proc/$pid/cmdline")" == *"$1/"* ]] || return 1
  printf '%s\n' "$pid"
}

stop_one() { # dir name
  local pid i
  pid=$(our_pid "$1" "$2") || {
    rm -f "$1/$2.pid"
    return 0
  }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$2 (pid $pid) ignored SIGTERM for 10s; killing"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
  fi
  alive "$pid" && die "$2 (pid $pid) is still running"
  rm -f "$1/$2.pid"
  log "stopped $2 (pid $pid)"
}

cmd_stop() {
  local dir
  dir=$(run_dir "${1:-}")
  stop_one "$dir" kube-apiserver
  stop_one "$dir" etcd
}

# A loopback port nobody listens on, below the ephemeral range, not handed out before.
declare -A TAKEN_PORTS=()
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    [[ -z "${TAKEN_PORTS[$p]:-}" ]] || continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      TAKEN_PORTS[$p]=1
      printf '%s\n' "$p"
      return 0
    fi
  done
  die "no free loopback port found"
}

require_openssl() {
  command -v openssl >/dev/null && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing openssl"
    apt-get update -qq && apt-get install -y -qq openssl >/dev/null
  fi
  command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
}

# CA, apiserver serving cert (127.0.0.1/localhost), admin client cert (O=system:masters) and the
# ServiceAccount token signing key pair, all in DIR/pki.
gen_pki() {
  local p=$1/pki
  rm -rf "$p"
  mkdir -p "$p"
  chmod 700 "$p"
  cat >"$p/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  (
    cd "$p"
    openssl req -x509 -new -nodes -newkey rsa:2048 -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=spillway-testbed-ca" -config openssl.cnf -extensions ca
    sign() { # name subject extensions
      openssl req -new -nodes -newkey rsa:2048 -keyout "$1.key" -out "$1.csr" -subj "$2" \
        -config openssl.cnf
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
        -days 365 -extfile openssl.cnf -extensions "$3" -out "$1.crt"
      rm -f "$1.csr"
    }
    sign apiserver "/CN=kube-apiserver" server
    sign admin "/O=system:masters/CN=spillway-admin" client
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
  ) >"$1/pki.log" 2>&1 || {
    cat "$1/pki.log" >&2
    die "certificate generation failed"
  }
}

# GET http://127.0.0.1:PORT/health with bash's /dev/tcp (no curl needed).
etcd_healthy() {
  local out
  # shellcheck disable=SC2016 # $1 expands in the inner bash
  out=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
    printf "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' _ "$1" 2>/dev/null) ||
    return 1
  [[ "$out" == *'"health":"true"'* ]]
}

start_etcd() { # dir -> sets ETCD_PORT
  local dir=$1 attempt peer i pid
  for attempt in 1 2 3; do
    ETCD_PORT=$(free_port)
    peer=$(free_port)
    rm -rf "$dir/etcd-data"
    nohup "$BIN_DIR/etcd" --name=testbed --data-dir="$dir/etcd-data" \
      --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
      --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls="http://127.0.0.1:$peer" \
      --initial-advertise-peer-urls="http://127.0.0.1:$peer" \
      --initial-cluster="testbed=http://127.0.0.1:$peer" --initial-cluster-state=new \
      --unsafe-no-fsync=true \
      </dev/null >"$dir/etcd.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/etcd.pid"
    for ((i = 0; i < 150; i++)); do
      etcd_healthy "$ETCD_PORT" && return 0
      alive "$pid" || break
      sleep 0.2
    done
    if alive "$pid"; then
      tail -n 30 "$dir/etcd.log" >&2
      die "etcd did not become healthy in 30s"
    fi
    log "etcd exited (attempt $attempt, ports $ETCD_PORT/$peer); retrying on other ports"
    tail -n 5 "$dir/etcd.log" >&2
  done
  die "etcd failed to start; see $dir/etcd.log"
}

start_apiserver() { # dir -> sets API_PORT
  local dir=$1 p=$1/pki
  API_PORT=$(free_port)
  nohup "$BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --cert-dir="$p" --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" \
    --service-account-issuer="https://127.0.0.1:$API_PORT" \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=Node,RBAC \
    --disable-admission-plugins=ServiceAccount \
    --enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy \
    --allow-privileged=true \
    </dev/null >"$dir/kube-apiserver.log" 2>&1 &
  echo "$!" >"$dir/kube-apiserver.pid"
}

write_kubeconfig() { # dir
  local k=$1/kubeconfig p=$1/pki kc=("$BIN_DIR/kubectl" --kubeconfig="$1/kubeconfig")
  rm -f "$k"
  "${kc[@]}" config set-cluster testbed --server="https://127.0.0.1:$API_PORT" \
    --certificate-authority="$p/ca.crt" --embed-certs=true >/dev/null
  "${kc[@]}" config set-credentials testbed-admin --client-certificate="$p/admin.crt" \
    --client-key="$p/admin.key" --embed-certs=true >/dev/null
  "${kc[@]}" config set-context testbed --cluster=testbed --user=testbed-admin >/dev/null
  "${kc[@]}" config use-context testbed >/dev/null
  chmod 600 "$k"
}

apiserver_ready() { # dir
  [[ "$("$BIN_DIR/kubectl" --kubeconfig="$1/kubeconfig" --request-timeout=3s get --raw=/readyz \
    2>/dev/null)" == ok ]]
}

# 0 when /readyz is ok; 2 when kube-apiserver exited because its port was taken meanwhile;
# otherwise reports why (failing checks, log tail) and fails.
wait_ready() { # dir
  local dir=$1 deadline=$((SECONDS + READY_TIMEOUT)) pid out
  pid=$(<"$dir/kube-apiserver.pid")
  while ((SECONDS < deadline)); do
    apiserver_ready "$dir" && return 0
    alive "$pid" || break
    sleep 0.5
  done
  if ! alive "$pid" && grep -q 'address already in use' "$dir/kube-apiserver.log"; then
    return 2
  fi
  if alive "$pid"; then
    log "kube-apiserver not ready within ${READY_TIMEOUT}s; failing checks:"
    out=$("$BIN_DIR/kubectl" --kubeconfig="$dir/kubeconfig" --request-timeout=3s \
      get --raw='/readyz?verbose' 2>&1) || true
    out=${out//\\n/$'\n'}
    grep -F '[-]' <<<"$out" >&2 || tail -n 5 <<<"$out" >&2
  else
    log "kube-apiserver exited"
  fi
  log "last lines of $dir/kube-apiserver.log:"
  tail -n 40 "$dir/kube-apiserver.log" >&2
  return 1
}

# On a failed start, stop whatever was started (runs as the EXIT trap of `start`).
STARTING_DIR=""
# shellcheck disable=SC2317 # invoked by the EXIT trap
stop_if_failed() {
  local rc=$?
  if ((rc != 0)) && [[ -n "$STARTING_DIR" ]]; then
    log "start failed; stopping what was started in $STARTING_DIR"
    cmd_stop "$STARTING_DIR" || true
  fi
  exit "$rc"
}

cmd_start() {
  local dir t0=$SECONDS attempt rc
  dir=$(run_dir "${1:-}")
  mkdir -p "$dir"
  cmd_build
  require_openssl
  if our_pid "$dir" kube-apiserver >/dev/null || our_pid "$dir" etcd >/dev/null; then
    die "a test bed is already running in $dir; run \`$0 stop $dir\` first"
  fi
  STARTING_DIR=$dir
  trap stop_if_failed EXIT
  rm -f "$dir/kubeconfig" "$dir/testbed.env"
  gen_pki "$dir"
  start_etcd "$dir"
  for attempt in 1 2 3; do
    start_apiserver "$dir"
    write_kubeconfig "$dir"
    rc=0
    wait_ready "$dir" || rc=$?
    ((rc == 2)) || break
    log "kube-apiserver port $API_PORT was taken (attempt $attempt); retrying on another port"
  done
  ((rc == 0)) || die "kube-apiserver failed to start; log: $dir/kube-apiserver.log"
  printf 'BIN_DIR=%q\nETCD_PORT=%s\nAPI_PORT=%s\n' "$BIN_DIR" "$ETCD_PORT" "$API_PORT" >"$dir/testbed.env"
  trap - EXIT
  STARTING_DIR=""
  log "ready in $((SECONDS - t0))s: https://127.0.0.1:$API_PORT (etcd 127.0.0.1:$ETCD_PORT)," \
    "kubeconfig $dir/kubeconfig, logs $dir/*.log"
}

# ---- env / status -------------------------------------------------------------------------------

cmd_env() {
  local dir
  dir=$(run_dir "${1:-}")
  printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig"
  # shellcheck disable=SC2016 # $PATH is expanded by whoever evals this
  printf 'export PATH=%q:"$PATH"\n' "$BIN_DIR"
}

cmd_status() {
  local dir name pid ok=0
  dir=$(run_dir "${1:-}")
  echo "versions: kubernetes $K8S_VERSION (staging $STAGING_VERSION), etcd $ETCD_VERSION, helm $HELM_VERSION"
  echo "binaries: $BIN_DIR"
  for name in kube-apiserver kubectl etcd helm; do
    if have "$name"; then echo "  $name: built"; else echo "  $name: missing (run: $0 build)"; fi
  done
  echo "run dir: $dir"
  for name in etcd kube-apiserver; do
    if pid=$(our_pid "$dir" "$name"); then echo "  $name: running (pid $pid)"; else
      echo "  $name: not running"
      ok=1
    fi
  done
  if ((ok == 0)) && [[ -r "$dir/testbed.env" ]] && apiserver_ready "$dir"; then
    # shellcheck disable=SC1091
    API_PORT=$(. "$dir/testbed.env" && echo "$API_PORT")
    echo "  ready: https://127.0.0.1:$API_PORT, KUBECONFIG=$dir/kubeconfig"
  else
    echo "  ready: no"
    ok=1
  fi
  return "$ok"
}

main() {
  local cmd=${1:-}
  shift || true
  case "$cmd" in
    build) cmd_build ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    env) cmd_env "$@" ;;
    status) cmd_status "$@" ;;
    *)
      echo "usage: $0 build | start [DIR] | stop [DIR] | env [DIR] | status [DIR]" >&2
      exit 2
      ;;
  esac
}

main "$@"
exit
