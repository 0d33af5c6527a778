# One image for every process of the Procfile: the command picks the process.
#   docker build -t smsdispatch .
#   docker run --rm smsdispatch smsdispatch api            (the default)
#   docker run --rm smsdispatch smsdispatch worker --lane priority --concurrency 2
# Configuration is the environment (README "Configuration"); listeners default to 127.0.0.1, so
# containers set SMSDISPATCH_API_HOST / SMSDISPATCH_WORKER_METRICS_HOST /
# SMSDISPATCH_EXPORTER_HOST to 0.0.0.0 (docker-compose.yml and deploy/k8s do).
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never
WORKDIR /src
# Exactly the locked versions CI tested (a hash required for each: a pin without one fails the
# build; tests/unit/test_deploy.py checks this file), then the project without resolving its
# dependencies again; bytecode compiled here, since the image runs with PYTHONDONTWRITEBYTECODE.
# uv is the one scripts/uv.sh pins.
COPY scripts/uv.sh ./scripts/
COPY requirements.lock ./
RUN uv=$(scripts/uv.sh) \
    && "$uv" venv --python "$(command -v python3)" /opt/smsdispatch \
    && "$uv" pip sync --python /opt/smsdispatch/bin/python --compile-bytecode --require-hashes \
       requirements.lock
COPY pyproject.toml README.md LICENSE celeryconfig.py ./
COPY client ./client
COPY dispatcher ./dispatcher
COPY workers ./workers
COPY simulator ./simulator
RUN "$(scripts/uv.sh)" pip install --python /opt/smsdispatch/bin/python --no-deps \
    --compile-bytecode ./client .

FROM python:3.11-slim-bookworm
# tini is PID 1: it forwards SIGTERM to the process (Celery's warm shutdown, uvicorn's graceful
# stop) and reaps zombies; it does not signal the whole group, so prefork children are left to
# their parent, which lets in-flight chunks finish.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin smsd
COPY --from=build /opt/smsdispatch /opt/smsdispatch
ENV PATH=/opt/smsdispatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SMSDISPATCH_METRICS_DIR=/tmp/smsdispatch-metrics
WORKDIR /app
RUN mkdir -p /app/var && chown smsd /app/var
USER 10001
# API, worker pools (priority, bulk, dlr, webhooks), exporter, simulator.
EXPOSE 8080 9101 9102 9103 9104 9105 9090
ENTRYPOINT ["tini", "--"]
CMD ["smsdispatch", "api"]
