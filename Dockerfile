# Runs every shipped scenario and writes the report to /app/reports (mount it to keep it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
COPY pyproject.toml README.md ./
COPY testbed ./testbed
COPY scenarios ./scenarios
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 1000 testbed \
    && mkdir -p /app/reports \
    && chown testbed:testbed /app/reports

USER 1000:1000
VOLUME ["/app/reports"]
ENTRYPOINT ["testbed"]
CMD ["run", "scenarios/", "--out", "reports"]
