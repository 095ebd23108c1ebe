"""Where each pipeline parameter is declared: the stage `Params` field it feeds.

The pipeline function's signature repeats the names, types and defaults (KFP reads them from
the signature); the help texts of the run form come from here, and a test checks that the
signature agrees with the declarations (tests/pipelines/test_parameters.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import MISSING, fields
from types import MappingProxyType

from cxrflow.cluster.dispatch import JobOptions
from cxrflow.stages import (
    gate,
    heads,
    import_public,
    ingest,
    pretrain,
    publish,
    report,
    split,
    version,
)
from cxrflow.stages.contract import help_of
from pipelines.kubernetes import CHECKPOINT_MOUNT, DATA_MOUNT

# Pipeline parameter -> (the dataclass that declares it, its field there).
DECLARED: dict[str, tuple[type, str]] = {
    "inbox": (ingest.Params, "inbox"),
    "data_dir": (ingest.Params, "data_dir"),
    "source": (import_public.Params, "source"),
    "repo_root": (version.Params, "repo_root"),
    "ground_truth": (ingest.Params, "ground_truth"),
    "max_side": (ingest.Params, "max_side"),
    "png_bits": (ingest.Params, "png_bits"),
    "write_dicom": (ingest.Params, "write_dicom"),
    "ingest_workers": (ingest.Params, "workers"),
    "retain_patient_characteristics": (ingest.Params, "retain_patient_characteristics"),
    "retain_longitudinal_modified_dates": (ingest.Params, "retain_longitudinal_modified_dates"),
    "clean_descriptors": (ingest.Params, "clean_descriptors"),
    "train_ratio": (split.Params, "train_ratio"),
    "val_ratio": (split.Params, "val_ratio"),
    "test_ratio": (split.Params, "test_ratio"),
    "split_seed": (split.Params, "seed"),
    "split_mode": (split.Params, "mode"),
    "dvc_remote": (version.Params, "dvc_remote"),
    "pretrain_preset": (pretrain.Params, "preset"),
    "pretrain_steps": (pretrain.Params, "steps"),
    "pretrain_batch_size": (pretrain.Params, "batch_size"),
    "pretrain_seed": (pretrain.Params, "seed"),
    "pretrain_init": (pretrain.Params, "init"),
    "pretrain_nodes": (JobOptions, "nodes"),
    "pretrain_gpus_per_node": (JobOptions, "gpus_per_node"),
    "training_backend": (JobOptions, "backend"),
    "training_job_timeout_hours": (JobOptions, "timeout_hours"),
    "keep_training_job": (JobOptions, "keep_job"),
    "heads_preset": (heads.Params, "preset"),
    "report_preset": (report.Params, "preset"),
    "report_steps": (report.Params, "steps"),
    "report_nodes": (JobOptions, "nodes"),
    "report_gpus_per_node": (JobOptions, "gpus_per_node"),
    "lm_dir": (report.Params, "lm_dir"),
    "gate_config": (publish.Params, "gate_config"),
    "force_train": (gate.Params, "force"),
}

# Parameters of the pipeline alone (where runs keep their files).
PIPELINE_ONLY: dict[str, str] = {
    "runs_dir": "Where stage runs keep checkpoints and outputs (a shared volume on a cluster).",
}


def help_text(name: str) -> str:
    """The run form's description of pipeline parameter `name`."""
    if name in PIPELINE_ONLY:
        return PIPELINE_ONLY[name]
    cls, field = DECLARED[name]
    return help_of(cls)[field]


# Where the pipeline's default differs from the stage's: scheduled retraining continues from
# the current champion encoder (run N+1 is continual training of run N), while a stage run by
# hand keeps its preset's default.
PIPELINE_DEFAULTS: dict[str, object] = {"pretrain_init": "champion"}


def declared_default(name: str) -> object:
    """The pipeline's default: `PIPELINE_DEFAULTS`, else the declaring dataclass's (None for
    none; "" stands for None in KFP)."""
    if name in PIPELINE_DEFAULTS:
        return PIPELINE_DEFAULTS[name]
    cls, field_name = DECLARED[name]
    f = next(f for f in fields(cls) if f.name == field_name)
    return None if f.default is MISSING else f.default


def docstring(summary: str, names: list[str]) -> str:
    """A Google-style docstring whose `Args:` KFP shows in the run form."""
    lines = [summary, "", "Args:"]
    lines += [f"    {n}: {help_text(n)}" for n in names]
    return "\n".join(lines) + "\n"


# Parameter profiles: values on top of the pipeline's defaults, chosen with
# `cxrflow submit --profile NAME`. `demo` is the pipeline's defaults (tiny presets, paths for a
# laptop); `production` is what a cluster run uses, and what k8s/recurring-run.yaml sets (a test
# holds the two equal).
DEMO: Mapping[str, object] = MappingProxyType({})
PRODUCTION: Mapping[str, object] = MappingProxyType(
    {
        # The inbox and the dataset on the data volume; the dataset sits inside the DVC project
        # (repo_root), which the versioning step initialises there on the first run.
        "inbox": f"{DATA_MOUNT}/inbox",
        "data_dir": f"{DATA_MOUNT}/dataset",
        "repo_root": DATA_MOUNT,
        # Empty: the pods take the remote from the cxrflow-pipeline-config ConfigMap.
        "dvc_remote": "",
        # Checkpoints on the volume the GPU steps, launchers and job nodes share.
        "runs_dir": f"{CHECKPOINT_MOUNT}/runs",
        "pretrain_preset": "paper",
        # Continual training: run N+1 starts from run N's champion encoder.
        "pretrain_init": "champion",
        "heads_preset": "paper",
        "report_preset": "paper",
    }
)
PROFILES: Mapping[str, Mapping[str, object]] = MappingProxyType(
    {"demo": DEMO, "production": PRODUCTION}
)


def profile(name: str) -> dict[str, object]:
    """The parameter values of profile `name`; ValueError naming the known profiles if none."""
    if name not in PROFILES:
        raise ValueError(f"profile: {name!r} is not a profile (known: {', '.join(PROFILES)})")
    return dict(PROFILES[name])


def check_profile(values: Mapping[str, object], signature: inspect.Signature) -> None:
    """Refuse a profile value whose name is not a declared pipeline parameter, or whose type is
    not the parameter's (bool is not an int; an int is a float)."""
    for name, value in values.items():
        if name not in signature.parameters or name not in {*DECLARED, *PIPELINE_ONLY}:
            raise ValueError(f"{name}: not a declared pipeline parameter")
        kind = signature.parameters[name].annotation
        ok = (isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)) or (
            kind is float and isinstance(value, int) and not isinstance(value, bool)
        )
        if not ok:
            raise ValueError(f"{name}: {value!r} is not of type {getattr(kind, '__name__', kind)}")
    check_values(values)


def check_values(values: Mapping[str, object]) -> None:
    """Refuse parameter values that cannot run, as far as a submitting machine can tell.

    `source` (public datasets instead of the inbox): its NAME=DIR items and dataset names; its
    directories are on the cluster's volumes, checked by the import step.
    """
    source = values.get("source")
    if isinstance(source, str) and source:
        import_public.parse_source(source, check_roots=False)
