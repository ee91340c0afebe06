# causality-sidecar image: a wheel built in one stage, installed into a virtual environment,
# and only that environment copied into a slim Python runtime. Runs as a numeric non-root
# user with a read-only root filesystem (it writes nothing; /tmp is the only scratch path).
#
#   docker build -t causality-sidecar:dev .
#   docker build --build-arg PYTHON_IMAGE=python:3.12.12-slim-bookworm -t causality-sidecar:dev .

# The base image of both stages (they must match: the venv links to the base's python).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# A C compiler for the extensions (sidecar/events/_scan.c, sidecar/merge/_runs.c,
# sidecar/ingest/_pblabels.c);
# this stage is discarded, the runtime image has no compiler. The official python images
# carry the Python headers; a plain Debian python3 gets them from python3-dev. Debian
# stable's packages, not pinned: they only build, and take the security updates of the
# release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && { [ -f "$(python -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ] \
      || apt-get install -y --no-install-recommends python3-dev; } \
 && rm -rf /var/lib/apt/lists/*
# Build tools and dependencies first, from pyproject.toml alone: this layer is reused
# until they change (the package step below then needs no network).
COPY pyproject.toml ./
RUN python -m pip install --no-cache-dir "setuptools==80.9.0" "wheel==0.45.1" \
 && python -m venv /opt/venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
# Then the package itself, as a wheel, without touching the dependencies again.
COPY README.md setup.py ./
COPY sidecar ./sidecar
RUN python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="causality-sidecar" \
      org.opencontainers.image.description="Observability sidecar: reverse proxy with RED metrics, local OTLP/HTTP metrics ingest, one Prometheus /metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/causality/causality-sidecar"
# The malloc thresholds keep glibc from returning and re-faulting large read buffers
# (perf-notes: half the 1 MiB throughput without them).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    MALLOC_MMAP_THRESHOLD_=4194304 \
    MALLOC_TRIM_THRESHOLD_=67108864
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8000 9464
ENTRYPOINT ["causality-sidecar"]
CMD ["run"]
