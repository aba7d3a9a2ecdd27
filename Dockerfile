# One image for every Revocast process of docker-compose.yml (worker, identity, services).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY revocation_events revocation_events
COPY producer producer
COPY consumer_sdk consumer_sdk
COPY streams streams
COPY receiver receiver
COPY identity_service identity_service
COPY revocast revocast
RUN pip install --no-cache-dir ".[streams,web,metrics,demo]"
RUN useradd --create-home revocast && mkdir /data && chown revocast /data
USER revocast
