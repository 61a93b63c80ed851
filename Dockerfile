# syntax=docker/dockerfile:1
# autodiff-service: the runtime image (no test or bench extras).

FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Runtime dependencies in their own layer: rebuilt only when a pyproject.toml changes. The
# service's and the client's (client/: the CLI's remote mode), less the client itself,
# which is installed from this tree below, never from a registry.
COPY pyproject.toml ./
COPY client/pyproject.toml ./client/
RUN python -c "import tomllib; print('\n'.join(d for f in ('pyproject.toml', 'client/pyproject.toml') for d in tomllib.load(open(f, 'rb'))['project']['dependencies'] if not d.startswith('autodiff-client')))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

# The two distributions: no dependency resolution, so code edits never touch the layer above.
COPY README.md LICENSE ./
COPY client ./client
COPY engine ./engine
COPY app ./app
RUN pip install --no-cache-dir --no-deps ./client .


FROM python:3.11-slim-bookworm AS runtime

# Parallelism comes from processes (replicas x UVICORN_WORKERS server processes, each
# with a pool of AUTODIFF_WORKERS, by default the cores divided among the server
# processes): one BLAS thread each, so a container's CPU limit is not oversubscribed.
# The service logs one JSON line per request itself, so uvicorn's access log is off.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=8000 \
    UVICORN_WORKERS=2 \
    UVICORN_ACCESS_LOG=false \
    UVICORN_TIMEOUT_KEEP_ALIVE=5 \
    UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=20 \
    UVICORN_LIMIT_CONCURRENCY=256 \
    UVICORN_PROXY_HEADERS=true \
    UVICORN_FORWARDED_ALLOW_IPS=127.0.0.1

RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin autodiff
COPY --from=build /opt/venv /opt/venv

# The app runs from the installed package. The working directory (which uvicorn
# puts on sys.path) is empty and not writable; only /tmp needs to be writable.
WORKDIR /srv
USER 10001:10001
EXPOSE 8000

# Uvicorn finishes in-flight requests on SIGTERM, for at most
# UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN seconds.
STOPSIGNAL SIGTERM

# No curl in a slim image: the standard library does the probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('UVICORN_PORT', '8000'), timeout=2)"]

# Host, port, workers and limits come from the UVICORN_* variables above,
# the service's own settings from AUTODIFF_*; all can be overridden at run time.
CMD ["uvicorn", "app.main:app"]
