# One image for every Marquee process (auth, upload, task, catalog, worker, gateway config).
# docker-compose.yml gives each container its command, e.g. `python -m services.auth`.
#
# Stages:
#   deps   the runtime dependencies only (`pip install .`, no dev extra) in /opt/venv
#   gen    deps + grpcio-tools: generates the stubs and Envoy's descriptor set into
#          /app/build/gen with protos/generate.sh, as the Makefile's `generate` target does
#   final  python:3.11-slim + the deps venv + the generated code + the source; non-root
# tests/unit/test_compose.py checks this file against the Makefile and docker-compose.yml.

ARG PYTHON_IMAGE=python:3.11-slim

# --- deps ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The dependency list alone first, so that a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY services ./services
COPY gateway ./gateway
COPY marquee_cli ./marquee_cli
RUN pip install .

# --- gen -------------------------------------------------------------------------------------
FROM deps AS gen
# grpcio-tools is held to the exact grpcio/protobuf versions the final image runs, so the
# generated code never needs a newer protobuf runtime than the one it will meet.
RUN pip freeze --exclude marquee > /tmp/runtime-constraints.txt \
    && pip install -c /tmp/runtime-constraints.txt grpcio-tools
WORKDIR /app
COPY protos ./protos
RUN sh protos/generate.sh build/gen

# --- final -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS final
# The services import the generated stubs as `marquee.*` from /app/build/gen and their own code
# from /app, ahead of the identical copy that `pip install .` put in site-packages (that copy
# has gateway/envoy.yaml.tmpl too: pyproject.toml declares it package data). MALLOC_ARENA_MAX:
# see devstack/stack.py.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/build/gen:/app \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PYTHONDONTWRITEBYTECODE=1 \
    MARQUEE_DATA_DIR=/data
# /data (keys, uploads) and /config (rendered Envoy config) belong to the runtime user; a named
# volume mounted there starts out with this ownership.
RUN groupadd --system --gid 10001 marquee \
    && useradd --system --uid 10001 --gid marquee --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin marquee \
    && mkdir -p /data/uploads /config \
    && chown -R marquee:marquee /data /config
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY --from=gen /app/build/gen /app/build/gen
COPY services ./services
COPY gateway ./gateway
COPY marquee_cli ./marquee_cli
# Bytecode compiled at build time, as root: the code stays read-only to the runtime user.
RUN python -m compileall -q /app/services /app/gateway /app/build/gen
USER marquee:marquee
# Every container names its process (docker-compose.yml); without one, say so and stop.
CMD ["python", "-c", "raise SystemExit('marquee image: give a command, e.g. python -m services.auth (any service in services/common/registry.py, or services.worker) or python -m gateway.render OUT')"]
