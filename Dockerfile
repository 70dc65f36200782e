# The pcidevices image: `pcidevices agent` on each node (deploy/agent/daemonset.yaml).
#
#   docker build -t ghcr.io/pcidevices/pcidevices:0.1.0 .
#
# Two stages: a wheel is built with the build tools, then installed into a slim runtime that
# has only what the agent runs: pci.ids (device names), pciutils (lspci, for operators in
# `kubectl exec`) and kmod (modprobe vfio-pci, with the host's /lib/modules mounted).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install --yes --no-install-recommends pciutils pci.ids kmod \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# Python writes no .pyc beside the installed code: the agent's root filesystem is read-only.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["pcidevices"]
CMD ["agent"]
