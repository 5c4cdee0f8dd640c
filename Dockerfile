# The model server (`python -m apps serve`) in a container, TF Serving style: mount a folder of
# <name>/<version>/ exports at /models and publish port 8501, e.g.
#   docker build -t keras-app-zoo-serve .
#   docker run --rm -p 127.0.0.1:8501:8501 -v "$PWD/saved_models:/models:ro" keras-app-zoo-serve
# Inside the container the server listens on all interfaces (the container's own network);
# `-p 127.0.0.1:...` keeps it on the host's loopback. BASE is any image with Python 3.11 and its
# venv module (the official python image, or Debian bookworm's python3 and python3-venv).
ARG BASE=python:3.11-slim
FROM ${BASE}

WORKDIR /srv/keras-app-zoo
COPY pyproject.toml README.md ./
COPY zoo zoo
COPY apps apps
COPY serving serving
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir . \
    && useradd --system --no-create-home serve
USER serve

EXPOSE 8501
CMD ["/opt/venv/bin/python", "-m", "apps", "serve", "--model-dir", "/models", "--host", "0.0.0.0", "--port", "8501"]
