#!/usr/bin/env bash
# The deployment test: the unchanged Dockerfile and docker-compose.yml on a real Docker
# engine, from a bare Debian machine (root, apt reachable, no image registry).
#
#   deploy/test/run.sh            # or `make deploy-test`
#   deploy/test/run.sh --fresh    # also rebuild the cached base images
#
# 1. Installs what it needs with --no-install-recommends: docker.io (dockerd, containerd,
#    runc), debootstrap, curl; and Compose v2 from Debian trixie (bookworm has only 1.29).
# 2. `docker compose config -q`: the file as every Compose v2 reads it.
# 3. Starts its own dockerd (data root under $DEPLOY_TEST_STATE, its own socket; overlay2,
#    runc, --mtu 1400), and stops it at the end, whatever happens.
# 4. Makes the base images locally (deploy/test/base-images.sh) and tags them with the
#    upstream names the Dockerfile and compose file use; cached between runs.
# 5. Builds the Dockerfile with the classic builder (DOCKER_BUILDKIT=0: no registry for
#    BuildKit's `# syntax=` image).
# 6. Runs the image: non-root, read-only root filesystem, HEALTHCHECK healthy,
#    `POST /grad` right, and `docker stop` (SIGTERM) lets an in-flight request finish.
# 7. Brings the compose file up with `--scale api=2` behind nginx (published on loopback),
#    sees both replicas answer through nginx, re-scales to 3 and sees the third answer.
# 8. Tears everything down and prints PASS/FAIL per check and a summary; exits non-zero
#    on any failure.
#
# Environment: DEPLOY_TEST_STATE (default /var/lib/autodiff-deploy-test: dockerd's data
# root, base-image tarballs, logs), DEPLOY_TEST_TIMEOUT_S (each wait; default 180),
# DEPLOY_TEST_COMPOSE_YML (another compose file to bring up, to try a variant).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/deploy/test
STATE=${DEPLOY_TEST_STATE:-/var/lib/autodiff-deploy-test}
# Short paths: a unix socket path must fit in 108 bytes.
RUNDIR=/run/autodiff-deploy-test
SOCK=$RUNDIR/docker.sock
WAIT_S=${DEPLOY_TEST_TIMEOUT_S:-180}
PROJECT=autodiff-deploy-test
SINGLE=autodiff-deploy-test-single
FRESH=0
for arg in "$@"; do
    case $arg in
        --fresh) FRESH=1 ;;
        -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {print}' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

export DOCKER_HOST=unix://$SOCK
export DOCKER_BUILDKIT=0
export COMPOSE_PROJECT_NAME=$PROJECT
export DEBIAN_FRONTEND=noninteractive

STARTED=$(date +%s)
PASSED=()
FAILED=()
DOCKERD_PID=""

log() { printf '[deploy-test %s] %s\n' "$(date +%T)" "$*" >&2; }
pass() { PASSED+=("$1"); printf 'PASS  %s\n' "$1"; }
fail() { FAILED+=("$1: $2"); printf 'FAIL  %s: %s\n' "$1" "$2"; }
# A failure that leaves nothing further to test: record it and stop (the trap cleans up).
die() { fail "$1" "$2"; exit 1; }

# wait_for SECONDS WHAT COMMAND...: poll COMMAND every second until it succeeds.
wait_for() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "timed out after ${limit}s waiting for $what"
            return 1
        fi
        sleep 1
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# DEPLOY_TEST_COMPOSE_YML: another compose file to bring up (to try a variant).
COMPOSE_YML=${DEPLOY_TEST_COMPOSE_YML:-$ROOT/docker-compose.yml}
compose() { docker compose -f "$COMPOSE_YML" -p "$PROJECT" "$@"; }

# ------------------------------------------------------------------ 1. packages

apt_install() {
    log "installing (no recommends): $*"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    install_compose_v2
}

# Compose v2 as Debian packages it (trixie's docker-compose; bookworm only has 1.29,
# which accepts files that every v2 refuses). Fetched through a private apt state, so
# the machine's sources stay bookworm's; the package depends only on libc6.
install_compose_v2() {
    if docker compose version 2>/dev/null | grep -q 'version v\?2\.'; then
        return
    fi
    local dir=$STATE/compose-apt
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${DEBIAN_MIRROR:-http://deb.debian.org/debian} trixie main" \
        >"$dir/sources.list"
    local apt=(apt-get -qq -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
        -o APT::Sandbox::User=root)
    log "installing Compose v2 (Debian trixie's docker-compose)"
    "${apt[@]}" update
    rm -f "$dir"/docker-compose_*.deb
    (cd "$dir" && "${apt[@]}" download docker-compose)
    dpkg -i "$dir"/docker-compose_*.deb >/dev/null
    docker compose version | grep -q 'version v\?2\.' || die install "docker compose is not v2 after installing it"
}

# ------------------------------------------------------------------- 3. dockerd

start_dockerd() {
    mkdir -p "$RUNDIR" "$STATE/docker"
    stop_dockerd # one left by an interrupted run
    log "starting dockerd (data root $STATE/docker)"
    dockerd --data-root "$STATE/docker" --exec-root "$RUNDIR/exec" -H "unix://$SOCK" \
        --pidfile "$RUNDIR/dockerd.pid" --storage-driver overlay2 --mtu 1400 \
        >"$STATE/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    if ! wait_for 60 dockerd docker info; then
        tail -n 20 "$STATE/dockerd.log" >&2
        die dockerd "dockerd did not answer on $SOCK within 60 s (log: $STATE/dockerd.log)"
    fi
    pass "dockerd $(docker version -f '{{.Server.Version}}') up (storage $(docker info -f '{{.Driver}}'), compose $(docker compose version --short))"
}

stop_dockerd() {
    local pid=$DOCKERD_PID
    [ -n "$pid" ] || pid=$(cat "$RUNDIR/dockerd.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    # Only a dockerd of ours: its command line names our socket.
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$SOCK" || return 0
    log "stopping dockerd ($pid)"
    kill -TERM "$pid"
    local i
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
    log "dockerd did not stop in 30 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local code=$?
    trap - EXIT INT TERM ERR
    # A command that failed outside any check (set -e) is a failure too.
    [ "$code" -eq 0 ] || [ ${#FAILED[@]} -gt 0 ] || fail aborted "exit status $code: ${LAST_ERROR:-see the log above}"
    if [ -S "$SOCK" ] && docker info >/dev/null 2>&1; then
        log "tearing down"
        compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
        docker rm -f "$SINGLE" >/dev/null 2>&1 || true
    fi
    stop_dockerd
    summary
    [ ${#FAILED[@]} -eq 0 ] && [ "$code" -eq 0 ] || exit 1
}

summary() {
    local took=$(($(date +%s) - STARTED)) item
    echo
    echo "deployment test: ${#PASSED[@]} passed, ${#FAILED[@]} failed, ${took} s"
    for item in "${FAILED[@]}"; do echo "  FAILED $item"; done
    if [ ${#FAILED[@]} -eq 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
}

# --------------------------------------------------------------- 4. base images

# The names to tag: the Dockerfile's FROM lines and the compose file's nginx image.
python_base() { sed -n 's/^FROM \([^ ]*\).*/\1/p' "$ROOT/Dockerfile" | sort -u; }
nginx_base() { compose config --images | grep -v "^$(api_image)\$" | grep nginx | sort -u; }
redis_base() { compose config --images | grep -v "^$(api_image)\$" | grep redis | sort -u; }
api_image() { compose config --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)["services"]["api"]["image"])'; }

base_images() {
    local py ng rd
    py=$(python_base)
    ng=$(nginx_base)
    rd=$(redis_base)
    [ "$(echo "$py" | wc -l)" -eq 1 ] || die base-images "the Dockerfile's stages start FROM several images: $py"
    if [ "$FRESH" = 1 ]; then
        log "--fresh: removing cached base images"
        rm -f "$STATE"/base/*.tar "$STATE"/base/*.changes
        docker rmi -f "$py" "$ng" "$rd" >/dev/null 2>&1 || true
    fi
    local missing=()
    docker image inspect "$py" >/dev/null 2>&1 || missing+=(python)
    docker image inspect "$ng" >/dev/null 2>&1 || missing+=(nginx)
    docker image inspect "$rd" >/dev/null 2>&1 || missing+=(redis)
    if [ ${#missing[@]} -gt 0 ]; then
        # Side by side: each is mostly downloading and unpacking.
        local name tag pids=()
        for name in "${missing[@]}"; do
            "$HERE/base-images.sh" "$STATE/base" "$name" &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do
            wait "$pid" || die base-images "building ${missing[*]} failed"
        done
        for name in "${missing[@]}"; do
            case $name in python) tag=$py ;; nginx) tag=$ng ;; *) tag=$rd ;; esac
            local changes=()
            while IFS= read -r line; do changes+=(--change "$line"); done <"$STATE/base/$name.changes"
            docker import "${changes[@]}" "$STATE/base/$name.tar" "$tag" >/dev/null
        done
    fi
    pass "base images $py, $ng and $rd present"
}

# --------------------------------------------------------------------- 5. build

build_image() {
    local image previous
    image=$(api_image)
    previous=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
    log "building $image (classic builder)"
    if ! timeout 1200 docker build --pull=false -t "$image" "$ROOT" >"$STATE/build.log" 2>&1; then
        tail -n 30 "$STATE/build.log" >&2
        die build "docker build failed (log: $STATE/build.log)"
    fi
    # The image this build replaced: disk, not cache. (Not `docker image prune`: the
    # build stage's untagged images are the classic builder's layer cache.)
    if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
        docker rmi "$previous" >/dev/null 2>&1 || true
    fi
    pass "the Dockerfile builds $image (unchanged, DOCKER_BUILDKIT=0)"
}

# ---------------------------------------------------------------- 6. the image

# post PORT PATH BODY [CURL ARGS...]: the status line, then the body, of one POST.
post() {
    local port=$1 path=$2 body=$3
    shift 3
    curl -sS --max-time 120 -H 'content-type: application/json' -d "$body" \
        -w '\n%{http_code}' "$@" "http://127.0.0.1:$port$path"
}

# A known answer: d/dx sum(x ** 3) = 3 x ** 2.
GRAD_BODY='{"expression": "sum(x ** 3)", "inputs": {"x": [1.0, 2.0, -3.0]}}'
check_grad_answer() { # RESPONSE (body, newline, status)
    python3 - "$1" <<'EOF'
import json, sys
body, _, status = sys.argv[1].rpartition("\n")
assert status == "200", f"status {status}: {body[:300]}"
answer = json.loads(body)
assert answer["value"] == 1 + 8 - 27, answer["value"]
assert answer["gradients"]["x"] == [3.0, 12.0, 27.0], answer["gradients"]
EOF
}

# A request that takes seconds in the pool (a long loop: 2 to 8 s here), y = sin(y) + x
# 20000 times; its answer is compared with an uninterrupted run's.
# About 1.5 s on an idle 2-core machine (28,000 of the 30,000 iterations allowed by default):
# long enough to be in flight half a second after it was sent.
SLOW_BODY=$(python3 -c 'import json; print(json.dumps({"expression": "y = x\nfor i in range(28000):\n    y = sin(y) + x\nreturn sum(y)", "inputs": {"x": [i / 100 for i in range(2000)]}}))')

same_answer() { # REFERENCE_FILE RESPONSE_FILE: both 200, with the same value and gradients
    python3 - "$1" "$2" <<'EOF'
import json, sys
(ref, _, ref_status), (got, _, got_status) = (open(a).read().rpartition("\n") for a in sys.argv[1:])
assert ref_status == got_status == "200", (ref_status, got_status)
ref, got = json.loads(ref), json.loads(got)
assert (ref["value"], ref["gradients"]) == (got["value"], got["gradients"])
EOF
}

health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1"; }
is_healthy() { [ "$(health "$1")" = healthy ]; }

check_image() {
    local image port
    image=$(api_image)
    port=$(free_port)
    # As compose runs it: read-only root, a tmpfs at /tmp, every capability dropped.
    # A time limit that lets the slow request below finish on a busy machine.
    docker rm -f "$SINGLE" >/dev/null 2>&1 || true
    docker run -d --name "$SINGLE" --read-only --tmpfs /tmp:size=64m --cap-drop ALL \
        --security-opt no-new-privileges:true -e AUTODIFF_TIME_LIMIT_S=60 \
        -p "127.0.0.1:$port:8000" "$image" >/dev/null

    local uid
    uid=$(docker exec "$SINGLE" sh -c "awk '/^Uid:/ {print \$2}' /proc/1/status")
    if [ -n "$uid" ] && [ "$uid" != 0 ]; then
        pass "the image runs as a non-root user (uid $uid, USER $(docker inspect -f '{{.Config.User}}' "$image"))"
    else
        fail non-root "the server process runs as uid '${uid}'"
    fi

    if wait_for "$WAIT_S" "$SINGLE to be healthy" is_healthy "$SINGLE"; then
        pass "HEALTHCHECK: healthy (read-only root filesystem, tmpfs /tmp)"
    else
        fail healthcheck "status '$(health "$SINGLE")' after ${WAIT_S}s; $(docker logs --tail 20 "$SINGLE" 2>&1)"
    fi
    local ro
    ro=$(docker exec "$SINGLE" sh -c 'for d in / /srv /opt/venv /etc; do touch $d/.w 2>/dev/null && echo "$d writable"; done; touch /tmp/.w && echo tmp-ok' 2>&1)
    if [ "$ro" = tmp-ok ] && [ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$SINGLE")" = true ]; then
        pass "root filesystem read-only, only /tmp writable"
    else
        fail read-only "$ro"
    fi

    local answer
    if answer=$(post "$port" /grad "$GRAD_BODY") && check_grad_answer "$answer"; then
        pass "POST /grad answers d/dx sum(x**3) = 3x**2 right"
    else
        fail grad "$answer"
    fi

    check_sigterm "$port"
}

# docker stop (SIGTERM, the image's STOPSIGNAL) while a request is in flight: the request
# still gets its whole, right answer, and the server stops before docker's grace period
# ends (no SIGKILL: exit status not 137).
check_sigterm() {
    local port=$1 reference=$STATE/slow.reference out=$STATE/slow.out started took code
    started=$(date +%s.%N)
    post "$port" /grad "$SLOW_BODY" >"$reference" 2>&1 || true
    took=$(python3 -c "import time; print(round(time.time() - $started, 1))")
    [ "$(tail -n 1 "$reference")" = 200 ] || { fail sigterm "the slow request answered $(head -c 300 "$reference")"; return; }
    log "slow request: ${took} s uninterrupted"

    post "$port" /grad "$SLOW_BODY" >"$out" 2>&1 &
    local curl_pid=$!
    sleep 0.5
    if ! kill -0 "$curl_pid" 2>/dev/null; then
        fail sigterm "the slow request finished within 0.5 s: nothing was in flight at SIGTERM"
        return
    fi
    docker stop --time 30 "$SINGLE" >/dev/null
    wait "$curl_pid" || true
    code=$(docker inspect -f '{{.State.ExitCode}}' "$SINGLE")
    if same_answer "$reference" "$out" && [ "$code" != 137 ]; then
        pass "SIGTERM (docker stop) finished the in-flight request: 200, same answer; exit $code"
    else
        fail sigterm "in-flight request got '$(head -c 300 "$out")', container exit $code"
    fi
}

# -------------------------------------------------------------------- 7. compose

api_containers() { compose ps -q api; }
healthy_api_count() {
    local id n=0
    for id in $(api_containers); do
        [ "$(health "$id")" = healthy ] && n=$((n + 1))
    done
    echo "$n"
}
has_healthy_apis() { [ "$(healthy_api_count)" -ge "$1" ]; }
nginx_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$1/healthz" >/dev/null; }

# replicas_answering PORT TAG COUNT: send COUNT requests through nginx with request ids
# TAG-<n>; print how many api containers logged at least one of them (each replica logs
# one line per request, with the id nginx passed on).
replicas_answering() {
    local port=$1 tag=$2 count=$3 i id n=0
    for i in $(seq 1 "$count"); do
        curl -fsS --max-time 10 -o /dev/null -H "X-Request-ID: $tag-$i" "http://127.0.0.1:$port/healthz" || true
    done
    sleep 1
    for id in $(api_containers); do
        # grep -c reads the whole log: -q would stop early and fail the pipe (pipefail).
        [ "$(docker logs "$id" 2>&1 | grep -c "\"$tag-[0-9]*\"" || true)" -gt 0 ] && n=$((n + 1))
    done
    echo "$n"
}

# until_replicas_answer PORT WANT: keep sending batches until WANT replicas answered one
# (nginx re-resolves `api` every 10 s, so a new replica is picked up within that).
until_replicas_answer() {
    local port=$1 want=$2 deadline n=0 round=0
    deadline=$(($(date +%s) + WAIT_S))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        round=$((round + 1))
        n=$(replicas_answering "$port" "deploy-test-$want-$round" 12)
        [ "$n" -ge "$want" ] && return 0
        sleep 2
    done
    log "only $n of $want replicas answered through nginx in ${WAIT_S}s"
    return 1
}

# stored_function_shared PORT: store a function through nginx, then call it 12 times
# through nginx (request ids stored-<n>): every call must answer 200 with the known
# gradient, and at least two replicas must have answered (the store is the redis service).
stored_function_shared() {
    local port=$1 answer id i ok=0 n=0 cid
    answer=$(post "$port" /functions '{"expression": "sum(c * x ** 3)", "constants": {"c": [1.0, 1.0, 1.0]}}')
    [ "$(tail -n 1 <<<"$answer")" = 201 ] || { log "POST /functions: $answer"; return 1; }
    id=$(head -n 1 <<<"$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    for i in $(seq 1 12); do
        answer=$(post "$port" /grad "{\"function\": \"$id\", \"inputs\": {\"x\": [1.0, 2.0, -3.0]}}" \
            -H "X-Request-ID: stored-$i")
        check_grad_answer "$answer" && ok=$((ok + 1))
    done
    sleep 1
    for cid in $(api_containers); do
        [ "$(docker logs "$cid" 2>&1 | grep -c '"stored-[0-9]*"' || true)" -gt 0 ] && n=$((n + 1))
    done
    log "stored function: $ok of 12 calls right, answered by $n replicas"
    [ "$ok" = 12 ] && [ "$n" -ge 2 ]
}

check_compose() {
    local port bound n
    port=$(free_port)
    export AUTODIFF_PORT=$port
    compose down --volumes --remove-orphans >/dev/null 2>&1 || true
    log "compose up --scale api=2 (nginx on 127.0.0.1:$port)"
    if ! timeout "$WAIT_S" docker compose -f "$COMPOSE_YML" -p "$PROJECT" \
        up -d --no-build --pull never --scale api=2 >"$STATE/compose-up.log" 2>&1; then
        cat "$STATE/compose-up.log" >&2
        compose logs --tail 20 >&2 || true
        die compose-up "docker compose up --scale api=2 failed"
    fi
    pass "docker compose up --scale api=2: the unchanged compose file starts"

    if wait_for "$WAIT_S" "2 healthy api replicas" has_healthy_apis 2 \
        && wait_for "$WAIT_S" "nginx on port $port" nginx_ready "$port"; then
        pass "2 api replicas healthy, nginx answering"
    else
        compose ps >&2 || true
        die compose-health "replicas healthy: $(healthy_api_count) of 2, nginx on :$port not answering"
    fi

    bound=$(compose port nginx 8080)
    if [ "$bound" = "127.0.0.1:$port" ]; then
        pass "nginx published on loopback only ($bound) by default"
    else
        fail bind-address "nginx published on '$bound', expected 127.0.0.1:$port"
    fi

    local answer
    if answer=$(post "$port" /grad "$GRAD_BODY") && check_grad_answer "$answer"; then
        pass "POST /grad through nginx answers right"
    else
        fail grad-nginx "$answer"
    fi

    if until_replicas_answer "$port" 2; then
        pass "both replicas answer through nginx"
    else
        fail two-replicas "requests through nginx did not reach both replicas"
    fi

    if stored_function_shared "$port"; then
        pass "a function stored through nginx answers on every replica (the shared redis store)"
    else
        fail stored-shared "a stored function did not answer on both replicas"
    fi

    log "re-scaling to 3 replicas"
    if ! timeout "$WAIT_S" docker compose -f "$COMPOSE_YML" -p "$PROJECT" \
        up -d --no-build --pull never --no-recreate --scale api=3 >>"$STATE/compose-up.log" 2>&1; then
        tail -n 20 "$STATE/compose-up.log" >&2
        die rescale "docker compose up --scale api=3 failed"
    fi
    if wait_for "$WAIT_S" "3 healthy api replicas" has_healthy_apis 3 \
        && until_replicas_answer "$port" 3; then
        pass "re-scaled to 3: nginx sends requests to the third replica too"
    else
        fail rescale "after --scale api=3: $(healthy_api_count) healthy, not all answering through nginx"
    fi
}

# ---------------------------------------------------------------------- main

[ "$(id -u)" = 0 ] || { echo "deploy/test/run.sh needs root (it installs packages and runs dockerd)" >&2; exit 2; }
mkdir -p "$STATE"
trap cleanup EXIT
trap 'LAST_ERROR="line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

install_packages
if out=$(compose config -q 2>&1); then
    pass "docker compose config -q (Compose $(docker compose version --short))"
else
    fail "compose-config" "$out"
fi
start_dockerd
base_images
build_image
check_image
check_compose
