"""Pod fragments shared by the TrainJob and PyTorchJob builders."""

from __future__ import annotations

from typing import Any

# The images run as this numeric non-root user (docker/Dockerfile.*).
RUN_AS_USER = 1000


def pod_security_context() -> dict[str, Any]:
    """Non-root pod with the images' uid/gid; PVCs become group-writable through fsGroup."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """No privilege escalation, no capabilities."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def entrypoint(args: tuple[str, ...], program: tuple[str, ...] = ("cxrflow",)) -> list[str]:
    """The program every node runs (the cxrflow console script by default) with its arguments."""
    return [*program, *args]
