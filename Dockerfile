# One image for the API, the worker and beat; compose.yaml picks the command.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gimletd ./gimletd
COPY api ./api
COPY workers ./workers
RUN pip install --no-cache-dir .

ENV GIMLETD_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8888
CMD ["gimletd", "api", "--host", "0.0.0.0"]
