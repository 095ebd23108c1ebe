"""Single-stage fine-tuning of projector + LM on a frozen encoder, with or without DeepSpeed.

One code path: the Hugging Face `Trainer`, given a ZeRO JSON (`deepspeed/zero2.json`,
`zero3.json`) or none. Cosine schedule with warm-up as a fraction of the steps (transformers
5 dropped `warmup_ratio`; a `warmup_steps` below 1 is that fraction), global batch by
gradient accumulation, bf16 on a GPU, gradient checkpointing (the Trainer's
`activation_checkpointing_enable` also calls `enable_input_require_grads`), resume from the
last checkpoint in the output directory.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

from cxrflow.models.preprocessing import make_image_processor
from cxrflow.report.config import DEEPSPEED_STAGES, ReportConfig
from cxrflow.report.data import ReportCollator, ReportDataset
from cxrflow.report.model import CxrLlavaForConditionalGeneration

log = logging.getLogger(__name__)

DEEPSPEED_DIR = Path(__file__).parent / "deepspeed"


@dataclass(frozen=True)
class TrainResult:
    """What a training run did: steps, per-step losses, time and tokens."""

    global_step: int
    losses: list[tuple[int, float]]
    train_runtime: float
    tokens_seen: int
    resumed_from: str | None
    model_dir: Path
    learning_rates: list[tuple[int, float]] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """Training throughput (input tokens, image tokens included)."""
        return self.tokens_seen / self.train_runtime if self.train_runtime > 0 else math.nan


def deepspeed_config(spec: str) -> Path | None:
    """The ZeRO JSON for "", "zero2", "zero3" or a path."""
    if not spec:
        return None
    if spec in DEEPSPEED_STAGES:
        return DEEPSPEED_DIR / f"{spec}.json"
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"DeepSpeed config not found: {spec}")
    return path


def single_process_distributed_env() -> None:
    """Rank/world/master variables for a run started without a launcher (torchrun sets them).

    DeepSpeed always initialises a process group; on a machine without CUDA it runs on its
    CPU accelerator (gloo).
    """
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" in os.environ:
        return
    with socket.socket() as sock:  # a free port for the single-rank rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(
        {
            "RANK": "0",
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )


def use_bf16(config: ReportConfig) -> bool:
    """bf16 when asked, or on "auto" when a GPU supports it; fp32 otherwise."""
    if config.precision == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return config.precision == "bf16"


class LossHistory(TrainerCallback):
    """Keeps every logged loss/LR and mirrors them to the active MLflow run, if any."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []
        self.learning_rates: list[tuple[int, float]] = []

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: object,
    ) -> None:
        if not logs or not state.is_world_process_zero or "loss" not in logs:
            return
        step = state.global_step
        self.losses.append((step, float(logs["loss"])))
        if step % 10 == 0 or step == state.max_steps:
            log.info("step %d/%d loss %.4f", step, state.max_steps, float(logs["loss"]))
        metrics = {"train_loss": float(logs["loss"])}
        if "learning_rate" in logs:
            self.learning_rates.append((step, float(logs["learning_rate"])))
            metrics["learning_rate"] = float(logs["learning_rate"])
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.log_metrics(metrics, step=step)


def training_arguments(config: ReportConfig, out_dir: Path) -> TrainingArguments:
    """`TrainingArguments` for `config`, checkpoints under `out_dir`."""
    ds = deepspeed_config(config.deepspeed)
    if ds is not None:
        single_process_distributed_env()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.accumulation_steps(world),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_ratio,  # < 1: a fraction of the training steps
        weight_decay=config.weight_decay,
        bf16=use_bf16(config),
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to="none",  # LossHistory logs to the stage's own MLflow run
        deepspeed=str(ds) if ds else None,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,  # pixel_values are not in the LM's signature
        include_num_input_tokens_seen="all",
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,
    )


def train_report_model(
    model: CxrLlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: ReportDataset,
    config: ReportConfig,
    out_dir: Path,
    *,
    resume: bool = True,
    save_final: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Fine-tune projector + LM; save the final model, tokenizer and preprocessing.

    Checkpoints go to `out_dir/checkpoints` (training resumes from the last one when
    `resume`); the final model to `out_dir/model` (gathered from ZeRO-3 shards if needed).
    """
    out_dir = Path(out_dir)
    model.freeze_vision_tower()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %.1fM parameters (projector + LM)", trainable / 1e6)
    history = LossHistory()
    args = training_arguments(config, out_dir / "checkpoints")
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=ReportCollator(int(tokenizer.pad_token_id)),
        processing_class=tokenizer,
        callbacks=[history, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # LossHistory logs instead of printing dicts
    last = (
        get_last_checkpoint(args.output_dir) if resume and Path(args.output_dir).is_dir() else None
    )
    if last:
        log.info("resuming from %s", last)
    output = trainer.train(resume_from_checkpoint=last)
    model_dir = out_dir / "model"
    if save_final:
        trainer.save_model(str(model_dir))  # gathers ZeRO-3 shards (stage3_gather_16bit_...)
    if save_final and trainer.is_world_process_zero():
        tokenizer.save_pretrained(model_dir)
        prep = model.image_preprocessing
        make_image_processor(prep.mean, prep.std, prep.image_size).save_pretrained(model_dir)
    return TrainResult(
        global_step=trainer.state.global_step,
        losses=history.losses,
        train_runtime=float(output.metrics.get("train_runtime", math.nan)),
        tokens_seen=int(trainer.state.num_input_tokens_seen or 0),
        resumed_from=last,
        model_dir=model_dir,
        learning_rates=history.learning_rates,
    )
