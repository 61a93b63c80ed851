#!/usr/bin/env bash
# Root filesystems for the two upstream base images that the Dockerfile and the compose
# file name, made from Debian packages, since no image registry is reachable here:
#
#   python:3.11-slim-bookworm  debootstrap --variant=minbase bookworm, plus this machine's
#                              own CPython 3.11 (pyenv) copied to /usr/local as the official
#                              image has it; the machine's CA bundle and an /etc/pip.conf that
#                              names it, so pip inside `docker build` reaches the registry
#                              through this network without editing the Dockerfile.
#   nginx:1.28-alpine          debootstrap --variant=minbase sid: Debian's nginx (sid's is
#                              >= 1.27.3, which the upstream `resolve` parameter needs;
#                              bookworm's and trixie's are older), wget for the compose
#                              healthcheck, a user `nginx` (nginx.conf says `user nginx;`).
#
#   redis:7.0-bookworm         debootstrap --variant=minbase bookworm: Debian's redis-server
#                              (the store the compose file's replicas share).
#
# Usage: base-images.sh OUTDIR [python|nginx|redis]...
# Writes OUTDIR/<name>.tar (a root filesystem) and OUTDIR/<name>.changes (the image's
# ENV/CMD/EXPOSE lines for `docker import --change`, which takes no STOPSIGNAL: nginx
# then stops on SIGTERM, its fast shutdown, instead of the official image's SIGQUIT). A tarball that exists is kept: delete it to
# rebuild. Needs root and debootstrap.
set -euo pipefail

OUT=${1:?usage: base-images.sh OUTDIR [python|nginx|redis]...}
shift
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(python nginx redis)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$OUT/cache/bookworm" "$OUT/cache/sid"
OUT=$(cd "$OUT" && pwd)

log() { printf '[base-images %s] %s\n' "$(date +%T)" "$*" >&2; }

# The CPython 3.11 to ship: DEPLOY_TEST_PYTHON_PREFIX, else pyenv's newest 3.11.
python_prefix() {
    if [ -n "${DEPLOY_TEST_PYTHON_PREFIX:-}" ]; then
        echo "$DEPLOY_TEST_PYTHON_PREFIX"
        return
    fi
    local found
    local pyenv=${PYENV_ROOT:-${HOME:-/root}/.pyenv}
    found=$(ls -d "$pyenv"/versions/3.11.* 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] || { log "no CPython 3.11 under $pyenv/versions (set DEPLOY_TEST_PYTHON_PREFIX)"; exit 1; }
    echo "$found"
}

# Remove a half-made root filesystem; debootstrap mounts /proc and /sys inside it, and an
# interrupted run can leave them mounted, so unmount first and never cross filesystems.
scrub() {
    local root=$1
    [ -e "$root" ] || return 0
    local mnt
    for mnt in $(findmnt -rno TARGET | grep -F "$root/" | sort -r || true); do
        umount -l "$mnt" || true
    done
    rm -rf --one-file-system "$root"
}

bootstrap() { # SUITE ROOT PACKAGES
    local suite=$1 root=$2 include=$3
    scrub "$root"
    log "debootstrap $suite (+ $include)"
    if ! debootstrap --variant=minbase --include="$include" --cache-dir="$OUT/cache/$suite" \
        "$suite" "$root" "$MIRROR" >"$root.log" 2>&1; then
        tail -n 30 "$root.log" >&2
        log "debootstrap $suite failed (log: $root.log)"
        exit 1
    fi
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
}

pack() { # NAME ROOT
    local name=$1 root=$2
    tar --numeric-owner -C "$root" -cf "$OUT/$name.tar.tmp" .
    mv "$OUT/$name.tar.tmp" "$OUT/$name.tar"
    scrub "$root"
    log "$name: $(du -h "$OUT/$name.tar" | cut -f1)"
}

build_python() {
    local prefix root=$OUT/python.rootfs version
    prefix=$(python_prefix)
    version=$("$prefix/bin/python3.11" -c 'import platform; print(platform.python_version())')
    # The shared libraries the interpreter's extension modules load (ssl, ctypes, sqlite3,
    # bz2, lzma, readline, curses, uuid, expat, nis), as the official slim image has them.
    bootstrap bookworm "$root" \
        ca-certificates,netbase,tzdata,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,zlib1g,libreadline8,libncursesw6,libuuid1,libexpat1,libtirpc3,libnsl2
    log "CPython $version from $prefix -> /usr/local"
    # The standard library (compiled files included, for start-up time) and nothing the
    # machine installed into it: no site-packages, tests, static library or Tk.
    tar -C "$prefix" \
        --exclude=lib/python3.11/site-packages --exclude=lib/python3.11/test \
        --exclude=lib/python3.11/idlelib --exclude=lib/python3.11/tkinter \
        --exclude=lib/python3.11/turtledemo --exclude='*.a' \
        -cf - include lib | tar -C "$root/usr/local" -xf -
    mkdir -p "$root/usr/local/lib/python3.11/site-packages"
    cp "$prefix/bin/python3.11" "$root/usr/local/bin/python3.11"
    ln -sf python3.11 "$root/usr/local/bin/python3"
    ln -sf python3.11 "$root/usr/local/bin/python"
    # The interpreter's RUNPATH is the pyenv prefix: find libpython in /usr/local/lib instead.
    chroot "$root" /sbin/ldconfig
    chroot "$root" /usr/local/bin/python3.11 -m ensurepip --default-pip >"$root.log" 2>&1 \
        || { cat "$root.log" >&2; log "ensurepip failed"; exit 1; }
    # pip in `docker build` goes through this network's TLS proxy: trust what the machine trusts.
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
    chroot "$root" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, lzma, bz2, venv, ensurepip'
    pack python "$root"
    cat >"$OUT/python.changes" <<EOF
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
ENV LANG=C.UTF-8
ENV PYTHON_VERSION=$version
CMD ["python3"]
EOF
}

build_nginx() {
    local root=$OUT/nginx.rootfs version
    bootstrap sid "$root" nginx,wget
    version=$(chroot "$root" /usr/sbin/nginx -v 2>&1 | sed 's/.*nginx\///')
    log "nginx $version"
    chroot "$root" useradd --system --no-create-home --user-group --shell /usr/sbin/nologin nginx
    # Logs to the container's output, as the official image does (its root is read-only here).
    ln -sf /dev/stdout "$root/var/log/nginx/access.log"
    ln -sf /dev/stderr "$root/var/log/nginx/error.log"
    pack nginx "$root"
    cat >"$OUT/nginx.changes" <<EOF
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV NGINX_VERSION=$version
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
EOF
}

build_redis() {
    local root=$OUT/redis.rootfs version
    bootstrap bookworm "$root" redis-server
    version=$(chroot "$root" /usr/bin/redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')
    log "redis $version"
    mkdir -p "$root/data"
    pack redis "$root"
    cat >"$OUT/redis.changes" <<EOF
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV REDIS_VERSION=$version
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]
EOF
}

for name in "${NAMES[@]}"; do
    if [ -s "$OUT/$name.tar" ] && [ -s "$OUT/$name.changes" ]; then
        log "$name: cached ($OUT/$name.tar)"
        continue
    fi
    case $name in
        python) build_python ;;
        nginx) build_nginx ;;
        redis) build_redis ;;
        *) log "unknown base image: $name"; exit 2 ;;
    esac
done
