# syntax=docker/dockerfile:1.7
#
# convlens images. Two targets:
#   api     the HTTP service, no TensorFlow:      docker build --target api -t convlens-api .
#   worker  job workers with TensorFlow (CPU):    docker build --target worker -t convlens-worker .
#   worker-gpu  the same with CUDA wheels:         docker build --target worker-gpu -t convlens-worker-gpu .
#
# The project is installed in editable mode from /srv/convlens, so the top-level
# migrations/ directory stays next to the app/ package, where app.db looks for it
# (Path(app.__file__).parent.parent / "migrations").
# Migrations are run by `convlens db upgrade` (the compose file's one-shot "migrate" service).

ARG PYTHON_VERSION=3.11

# --- base: Python, a non-root user, the data directory ---------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 convlens \
 && useradd --system --uid 10001 --gid convlens --home-dir /srv/convlens --shell /usr/sbin/nologin convlens \
 && mkdir -p /srv/convlens /var/lib/convlens \
 && chown convlens:convlens /var/lib/convlens
WORKDIR /srv/convlens

# --- dependency layers (cached until pyproject.toml changes) -----------------------------
FROM base AS deps-api
COPY pyproject.toml ./
RUN python -m venv /opt/venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install --upgrade pip setuptools wheel \
 && pip install -r /tmp/requirements.txt

FROM deps-api AS deps-worker
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['worker']))" > /tmp/requirements-worker.txt \
 && pip install -r /tmp/requirements-worker.txt

# --- the source, installed in editable mode ----------------------------------------------
FROM base AS source
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations

# --- api: FastAPI + uvicorn, no TensorFlow ------------------------------------------------
FROM base AS api
COPY --from=deps-api /opt/venv /opt/venv
COPY --from=source /srv/convlens /srv/convlens
RUN pip install --no-deps --no-build-isolation -e . \
 && python -c "import app.db; assert (app.db.MIGRATIONS_DIR / 'env.py').is_file(), app.db.MIGRATIONS_DIR" \
 && convlens --help > /dev/null
ENV CONVLENS_DATA_DIR=/var/lib/convlens \
    CONVLENS_HOST=0.0.0.0 \
    CONVLENS_PORT=8000 \
    CONVLENS_AUTH_MODE=api_key \
    CONVLENS_LOG_JSON=true
USER convlens
VOLUME ["/var/lib/convlens"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "app.observability.healthcheck"]
CMD ["convlens", "serve"]

# --- worker: TensorFlow, runs queued jobs ----------------------------------------------
FROM base AS worker
COPY --from=deps-worker /opt/venv /opt/venv
COPY --from=source /srv/convlens /srv/convlens
RUN pip install --no-deps --no-build-isolation -e . \
 && python -c "import app.db; assert (app.db.MIGRATIONS_DIR / 'env.py').is_file(), app.db.MIGRATIONS_DIR" \
 && convlens --help > /dev/null
ENV CONVLENS_DATA_DIR=/var/lib/convlens \
    CONVLENS_EXECUTOR=celery \
    CONVLENS_LOG_JSON=true \
    TF_CPP_MIN_LOG_LEVEL=2
USER convlens
VOLUME ["/var/lib/convlens"]
CMD ["convlens", "worker"]

# --- worker-gpu: the worker with CUDA-enabled TensorFlow, for the training queue ------------
# TensorFlow's CUDA libraries come as wheels; the host needs only the NVIDIA driver
# and the NVIDIA container toolkit.
FROM worker AS worker-gpu
USER root
RUN pip install "tensorflow[and-cuda]>=2.18"
USER convlens
