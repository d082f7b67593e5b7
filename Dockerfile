# The node and worker image: noetl-actors and its built-in plugins.
#
#   docker build -t noetl-actors/noetl:0.1.0 .
#
# The same image runs the node (`noetl node start`, deploy/), plugin workers
# (`noetl worker`) and the Jobs of the built-in plugins under
# `runner: kubernetes`, whose command is `python -m noetl_actors.runners.entry`
# (docs/kubernetes.md). The tag must be the one the plugins' plugin.yaml name
# in `image:` (the package's version). A plugin of your own with its own
# dependencies gets an image built FROM this one (docs/kubernetes.md).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY setup.cfg pyproject.toml README.md ./
COPY noetl_actors ./noetl_actors
COPY plugins ./plugins
COPY supervisors ./supervisors
# A plain (not editable) install: the plugins and supervisors/ go to
# /usr/local/share/noetl-actors, where the package finds them.
RUN pip install . && rm -rf /build

# No root, no shell history, no home to write to: the node writes only to
# /tmp (an emptyDir in deploy/), the entrypoint only its termination message.
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin noetl
USER 10001:10001
WORKDIR /tmp
ENV HOME=/tmp

EXPOSE 8080
ENTRYPOINT ["noetl"]
CMD ["node", "start", "--config", "/etc/noetl/node.yaml"]
