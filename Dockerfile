# Runs every shipped scenario and writes the report to /app/reports (mount it to keep it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY testbed ./testbed
COPY scenarios ./scenarios
COPY labs ./labs
# The project itself with its optional accelerator; versions come from pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[fast]" \
    && useradd --create-home --uid 1000 testbed \
    && mkdir -p /app/reports \
    && chown testbed:testbed /app/reports

USER 1000:1000
VOLUME ["/app/reports"]
ENTRYPOINT ["testbed"]
CMD ["run", "scenarios/", "--out", "reports"]
