"""The MLflow vocabulary of the project: tag names, registered model names and aliases.

One module so that a tag is spelled once: the stages write these, the registry, the lineage
queries, the promotion gate and the model card read them.
"""

from __future__ import annotations

from typing import Final

# Run and model-version tags.
TAG_STAGE: Final = "cxrflow.stage"
TAG_PIPELINE_RUN: Final = "cxrflow.pipeline_run"
TAG_PIPELINE_PARAMS: Final = "cxrflow.pipeline_params_digest"
TAG_GIT_COMMIT: Final = "cxrflow.git_commit"
TAG_DATA_VERSION: Final = "cxrflow.data_version"
TAG_DATA_SOURCE: Final = "cxrflow.data_source"  # synthetic:, real: or mixed: + source names
TAG_SPLIT_DIGEST: Final = "cxrflow.split_digest"
TAG_ENCODER_VERSION: Final = "cxrflow.encoder_version"
TAG_ENCODER_DIGEST: Final = "cxrflow.encoder_digest"
TAG_INIT_FROM: Final = "cxrflow.init_from"  # the init as asked: random, champion, models:/..
TAG_INIT_PREFIX: Final = "cxrflow.init."  # what it resolved to: source, sha256, model, ...
TAG_DEVICE: Final = "cxrflow.device"  # what pre-training ran on: "cpu", "NVIDIA H200", ...
TAG_NOT_RUN_PREFIX: Final = "cxrflow.not_run."  # + task: why an enabled task did not run
TAG_PRESET_MODEL: Final = "cxrflow.preset_model"
TAG_INGEST_SHARDS: Final = "cxrflow.ingest_shards"
TAG_DEID_PROFILE: Final = "cxrflow.deid_profile"
TAG_DEID_OPTIONS: Final = "cxrflow.deid_options"
TAG_PARENTS: Final = "cxrflow.parent_models"
TAG_MODEL_KIND: Final = "cxrflow.model_kind"
TAG_MODEL_CARD: Final = "cxrflow.model_card"
# Data sources whose terms bind a version's weights, its parents' included (comma-separated).
TAG_DATA_TERMS: Final = "cxrflow.data_terms"
METRIC_TAG_PREFIX: Final = "cxrflow.metric."
EVAL_RUN_TAG: Final = "cxrflow.evaluation_run"
TAG_PREFIX: Final = "cxrflow."

# The stages through which images enter a pipeline run: DICOM ingestion or a public-dataset
# import; each writes the same manifest and counts (`files_found`, `files_written`, ...).
INGEST_STAGE: Final = "ingest"
IMPORT_STAGE: Final = "import"
ENTRY_STAGES: Final = (INGEST_STAGE, IMPORT_STAGE)

# Registered models and their aliases.
ENCODER_MODEL: Final = "cxrflow-encoder"
REPORT_MODEL: Final = "cxrflow-report-generator"
HEAD_MODEL_PREFIX: Final = "cxrflow-head"
CANDIDATE: Final = "candidate"
CHAMPION: Final = "champion"
