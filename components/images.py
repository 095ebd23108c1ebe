"""Which container image the components run in: one configurable registry/tag setting."""

from __future__ import annotations

import os

from cxrflow import __version__

REGISTRY = os.environ.get("CXRFLOW_IMAGE_REGISTRY", "ghcr.io/cxrflow")
TAG = os.environ.get("CXRFLOW_IMAGE_TAG", __version__)
CPU_IMAGE = f"{REGISTRY}/cxrflow-cpu:{TAG}"
CUDA_IMAGE = f"{REGISTRY}/cxrflow-cuda:{TAG}"
