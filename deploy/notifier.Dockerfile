# The tasklight notifier image. Build context: the repository root (see docker-compose.yml).
# The service Dockerfiles differ only in their last lines; keep them alike.

# Build stage: install the project, without its dev extras, into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tasklight
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# The browser package's modules, which the api serves (the wheel copies them beside it).
COPY clients/js ./clients/js
RUN /opt/tasklight/bin/pip install ".[otel]"

# Run stage: the virtualenv alone, run by an unprivileged user.
FROM python:3.11-slim
ENV PATH=/opt/tasklight/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tasklight
COPY --from=build /opt/tasklight /opt/tasklight
USER tasklight
# 8005: /metrics for operators (TASKLIGHT_NOTIFIER_METRICS_PORT), never routed to users.
EXPOSE 8001 8005
CMD ["python", "-m", "services.notifier"]
