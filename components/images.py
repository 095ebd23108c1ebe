"""Which container image the components run in: one configurable registry/tag setting.

The components are decorated with these images at import; `cxrflow compile --registry/--tag`
rebinds them in the compiled IR afterwards (`pipelines.training.compile_pipeline`), so the
images are a compile-time setting whatever was imported first.
"""

from __future__ import annotations

import os
import re

from cxrflow import __version__

DEFAULT_REGISTRY = "ghcr.io/cxrflow"
IMAGE_NAMES = ("cxrflow-cpu", "cxrflow-cuda")
# A registry host (optionally with a port) and a lowercase repository path, as `docker push`
# accepts them: no scheme, no trailing slash, no tag or digest.
_REGISTRY = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def check_registry(registry: str) -> str:
    """`registry` if it is a valid `host[:port][/path]`; ValueError naming the setting if not."""
    if not isinstance(registry, str) or not _REGISTRY.fullmatch(registry):
        raise ValueError(
            f"registry: {registry!r} is not an image registry (expected host[:port][/path], "
            "lowercase, no scheme, tag or trailing slash, e.g. registry.example.org/team)"
        )
    return registry


def check_tag(tag: str) -> str:
    """`tag` if it is a valid image tag; ValueError naming the setting if not."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise ValueError(f"tag: {tag!r} is not an image tag (letters, digits, _ . -; 128 max)")
    return tag


def image(name: str, registry: str, tag: str) -> str:
    """The reference of project image `name` (one of IMAGE_NAMES) in `registry` at `tag`."""
    if name not in IMAGE_NAMES:
        raise ValueError(f"image: {name!r} is not a project image ({', '.join(IMAGE_NAMES)})")
    return f"{check_registry(registry)}/{name}:{check_tag(tag)}"


REGISTRY = os.environ.get("CXRFLOW_IMAGE_REGISTRY", DEFAULT_REGISTRY)
TAG = os.environ.get("CXRFLOW_IMAGE_TAG", __version__)
CPU_IMAGE = f"{REGISTRY}/cxrflow-cpu:{TAG}"
CUDA_IMAGE = f"{REGISTRY}/cxrflow-cuda:{TAG}"
