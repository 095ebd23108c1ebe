"""Submitting and scheduling pipeline runs on Kubeflow Pipelines through its API (kfp.Client)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cxrflow.cluster.config import ClusterConfigError
from cxrflow.orchestration.params import pipeline_name as compiled_name
from cxrflow.orchestration.params import type_params
from cxrflow.orchestration.schedule import RecurringRunSpec, load_recurring_run

log = logging.getLogger(__name__)

TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"


class KfpApiError(RuntimeError):
    """The KFP API could not be reached or refused a request; the message names the host."""


def read_token(token_path: Path | None = None) -> str | None:
    """The ServiceAccount token from `token_path` or $KF_PIPELINES_SA_TOKEN_PATH (None: none)."""
    path = token_path or (
        Path(os.environ[TOKEN_PATH_ENV]) if os.environ.get(TOKEN_PATH_ENV) else None
    )
    if path is None:
        return None
    if not path.is_file():
        raise KfpApiError(f"token file not found: {path} (set {TOKEN_PATH_ENV} or --token-path)")
    return path.read_text().strip() or None


def kfp_client(host: str, *, token_path: Path | None = None, namespace: str | None = None) -> Any:
    """A kfp.Client for `host` authenticated with the SA token (it asks the API's healthz)."""
    import kfp

    if not host:
        raise KfpApiError(f"no KFP API host: pass --host or set {ENDPOINT_ENV}")
    kwargs: dict[str, Any] = {"host": host, "existing_token": read_token(token_path)}
    if namespace:
        kwargs["namespace"] = namespace
    with warnings.catch_warnings(), api_call(host, "connect"):
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(**kwargs)


@contextmanager
def api_call(host: str, action: str) -> Iterator[None]:
    """Turn transport and API errors of one request into a KfpApiError naming `host`."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as exc:
        raise KfpApiError(
            f"the KFP API at {host} refused to {action}: HTTP {exc.status} {exc.reason}"
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise KfpApiError(
            f"cannot {action}: the KFP API at {host} is unreachable ({reason})"
        ) from exc


def submit_run(
    host: str,
    params: Mapping[str, Any],
    *,
    experiment: str,
    pipeline_yaml: Path,
    token_path: Path | None = None,
    namespace: str | None = None,
    run_name: str | None = None,
    service_account: str | None = None,
) -> str:
    """Start one run of the compiled pipeline with typed `params`; returns the KFP run id."""
    arguments = type_params(params, pipeline_yaml, require_all=True)
    client = kfp_client(host, token_path=token_path, namespace=namespace)
    with api_call(host, "submit a run"):
        result = client.create_run_from_pipeline_package(
            str(pipeline_yaml),
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment,
            namespace=namespace,
            service_account=service_account,
        )
    log.info("submitted run %s to %s (experiment %s)", result.run_id, host, experiment)
    return str(result.run_id)


def schedule_request(
    spec: RecurringRunSpec,
    pipeline_yaml: Path,
    *,
    cron: str | None = None,
    params: Mapping[str, Any] | None = None,
    pipeline_name: str | None = None,
    profile: Mapping[str, Any] | None = None,
) -> RecurringRunSpec:
    """The spec with `cron`/`params` overrides, its parameters typed by the compiled pipeline.

    Parameters come from `profile`, then the spec's own, then `params` (the last one wins).
    """
    name = pipeline_name or spec.pipeline
    if name != compiled_name(pipeline_yaml):
        raise ClusterConfigError(
            f"pipeline: the spec names {name!r} but {pipeline_yaml} is "
            f"{compiled_name(pipeline_yaml)!r}"
        )
    merged = {**(profile or {}), **spec.parameters, **(params or {})}
    typed = type_params(merged, pipeline_yaml, require_all=True)
    return dataclasses.replace(spec, cron=cron or spec.cron, pipeline=name, parameters=typed)


def _pipeline_version(
    client: Any, pipeline_yaml: Path, name: str, version_name: str
) -> tuple[str, str]:
    """(pipeline id, version id): upload the pipeline and/or the version when missing."""
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(pipeline_yaml), pipeline_name=name).pipeline_id
    same_name = json.dumps(
        {
            "predicates": [
                {"operation": "EQUALS", "key": "display_name", "stringValue": version_name}
            ]
        }
    )
    found = client.list_pipeline_versions(pipeline_id, filter=same_name).pipeline_versions or []
    if found:
        log.info("pipeline %s version %s exists: reusing it", name, version_name)
        return pipeline_id, found[0].pipeline_version_id
    version = client.upload_pipeline_version(
        str(pipeline_yaml), pipeline_version_name=version_name, pipeline_id=pipeline_id
    )
    return pipeline_id, version.pipeline_version_id


def schedule_run(
    host: str,
    cron: str | None = None,
    *,
    spec_path: Path,
    pipeline_yaml: Path,
    version_name: str,
    pipeline_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    token_path: Path | None = None,
    namespace: str | None = None,
    profile: Mapping[str, Any] | None = None,
) -> str:
    """Create the recurring run of `spec_path`, bound to an uploaded pipeline version."""
    spec = schedule_request(
        load_recurring_run(spec_path),
        pipeline_yaml,
        cron=cron,
        params=params,
        pipeline_name=pipeline_name,
        profile=profile,
    )
    client = kfp_client(host, token_path=token_path, namespace=namespace)
    with api_call(host, "upload the pipeline version"):
        pipeline_id, version_id = _pipeline_version(
            client, pipeline_yaml, spec.pipeline, version_name
        )
    with api_call(host, "get or create the experiment"):
        experiment_id = client.create_experiment(spec.experiment, namespace=namespace).experiment_id
    with api_call(host, "create the recurring run"):
        run = client.create_recurring_run(
            **spec.create_recurring_run_kwargs(experiment_id, pipeline_id, version_id)
        )
    log.info("recurring run %s (%s) created on %s", spec.name, spec.cron, host)
    return str(run.recurring_run_id)
