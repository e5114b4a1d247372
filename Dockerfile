# syntax=docker/dockerfile:1
# groupgraph: `docker build -t groupgraph .`, then see compose.yaml and docs/deploy.md.
# PYTHON_IMAGE: any Debian-based image with Python 3.11 (python3 -m venv) at /usr/local/bin/python.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the app and its dependencies into a virtual environment ---------------------------------
FROM ${PYTHON_IMAGE} AS build
# PIP_CERT, PIP_INDEX_URL: only where PyPI is reached through a proxy or a mirror of one's own
ARG PIP_CERT
ARG PIP_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/groupgraph
# the dependencies first (a layer that changes only with pyproject.toml), then the code
COPY pyproject.toml ./
RUN mkdir -p app resolvers permissions dataloaders \
    && touch app/__init__.py resolvers/__init__.py permissions/__init__.py dataloaders/__init__.py \
    && /opt/groupgraph/bin/pip install . \
    && /opt/groupgraph/bin/pip uninstall -y groupgraph
COPY app ./app
COPY resolvers ./resolvers
COPY permissions ./permissions
COPY dataloaders ./dataloaders
RUN /opt/groupgraph/bin/pip install --no-deps . \
    && /opt/groupgraph/bin/pip uninstall -y pip setuptools \
    && /opt/groupgraph/bin/python -m compileall -q /opt/groupgraph/lib

# --- run: the interpreter, the environment, an unprivileged user; no compilers, no pip ---------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 groupgraph \
    && useradd --system --uid 10001 --gid groupgraph --home-dir /var/lib/groupgraph --create-home \
       --shell /usr/sbin/nologin groupgraph \
    && (python -m pip uninstall -y pip setuptools wheel >/dev/null 2>&1 || true)
COPY --from=build /opt/groupgraph /opt/groupgraph
ENV PATH=/opt/groupgraph/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GROUPGRAPH_ENV=production \
    GROUPGRAPH_HOST=0.0.0.0 \
    GROUPGRAPH_PORT=8000
WORKDIR /var/lib/groupgraph
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/readyz' % os.environ.get('GROUPGRAPH_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]
ENTRYPOINT ["groupgraph"]
CMD ["serve"]
