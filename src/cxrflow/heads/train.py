"""All heads on one frozen encoder and one data version: the library half of the stage.

`train_heads` trains and evaluates (train split -> select on val -> report on test), writes
the exported heads, PNGs, curves and Markdown tables under `out_dir`, and returns what it
measured; it knows nothing of MLflow (see `cxrflow.stages.heads`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from cxrflow.dataset import Dataset
from cxrflow.findings import FINDINGS, label_column
from cxrflow.heads.augment import classification_augment, segmentation_augment
from cxrflow.heads.classification import (
    ClassificationResult,
    image_batches,
    run_classification,
)
from cxrflow.heads.config import HeadsConfig, HeadsConfigError
from cxrflow.heads.data import ImageDataset, load_manifest, split_frame
from cxrflow.heads.demographics import DemographicsResult, run_demographics
from cxrflow.heads.export import HeadCard, Sigmoid, export_head, logistic_module
from cxrflow.heads.features import (
    FeatureCache,
    default_layers,
    encode_batch,
    encoder_digest,
    extract_features,
    file_digest,
    select,
)
from cxrflow.heads.plots import overlays_png, pr_curves_png
from cxrflow.heads.report import classification_table, demographics_table, segmentation_table
from cxrflow.heads.segmentation import (
    SegmentationResult,
    choose_structures,
    evaluate,
    make_decoder,
    map_batches,
    train_decoder,
)
from cxrflow.models import DinoViT, EncoderPreprocessing, load_encoder

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CLASSIFICATION, SEGMENTATION = "classification", "segmentation"
NO_LABELS = "no image in the data has a finding label"
NO_MASKS = "no image in the data has a mask"


def has_labels(manifest: pd.DataFrame, findings: Sequence[str] = ()) -> bool:
    """Whether any image carries a label of `findings` (empty: any finding); an unlabelled
    inbox has none."""
    columns = [label_column(f) for f in findings or FINDINGS]
    columns = [c for c in columns if c in manifest.columns]
    return bool(columns) and bool(manifest[columns].notna().to_numpy().any())


def has_masks(manifest: pd.DataFrame) -> bool:
    """Whether any image carries a mask (a dataset with none cannot train segmentation)."""
    return "mask_path" in manifest.columns and bool(manifest["mask_path"].notna().any())


def _not_run(result: HeadsResult, task: str, why: str) -> str:
    """Record that an enabled task did not run; its section of the heads' Markdown."""
    # Hospital inboxes without side-car labels and public releases without masks still train
    # the other heads; the reason travels to the evaluation and the card instead of failing.
    result.not_run[task] = why
    log.warning("%s not trained: %s", task, why)
    return f"## {task.capitalize()}\n\nNot trained: {why}.\n"


@dataclass
class HeadsResult:
    """What the heads measured and where their files are."""

    classification: ClassificationResult | None = None
    segmentation: list[SegmentationResult] = field(default_factory=list)
    demographics: DemographicsResult | None = None
    exported: dict[str, Path] = field(default_factory=dict)  # head name -> export dir
    artifacts: list[Path] = field(default_factory=list)  # PNGs, JSON curves
    markdown: str = ""
    markdown_path: Path | None = None
    encoder_digest: str = ""
    data_digest: str = ""
    not_run: dict[str, str] = field(default_factory=dict)  # enabled task -> why it did not run

    def metrics(self) -> dict[str, float]:
        """Flat, finite metrics (undefined values are left out, never logged as 0)."""
        out: dict[str, float] = {}
        if self.classification is not None:
            for name, ms in self.classification.summary().items():
                for m, (mean, std) in ms.items():
                    out[f"cls.{m}.{name}"] = mean
                    out[f"cls.{m}_std.{name}"] = std
            # The counts behind each score: the model card flags results that rest on few.
            for name, (positives, labelled) in self.classification.test_counts().items():
                out[f"cls.positives.{name}"] = positives
                out[f"cls.labelled.{name}"] = labelled
        for r in self.segmentation:
            for s, d in r.dice.items():
                out[f"seg.{r.decoder_name}.dice.{s}"] = d.mean
                out[f"seg.{r.decoder_name}.dice_std.{s}"] = d.std
        if self.demographics is not None:
            for t, d in self.demographics.scores.items():
                out[f"demo.accuracy.{t}"] = d.accuracy
                out[f"demo.accuracy_std.{t}"] = d.std
                out[f"demo.majority.{t}"] = d.majority_rate
                out[f"demo.images.{t}"] = d.images
        return {k: float(v) for k, v in out.items() if not math.isnan(v)}


def head_metrics(metrics: Mapping[str, float], head: str) -> dict[str, float]:
    """The part of `HeadsResult.metrics()` that scores one exported head (a key of `exported`):
    `classification`, `segmentation-<decoder>` or `demographics-<target>`."""
    task, _, variant = head.partition("-")
    belongs = {
        "classification": lambda k: k.startswith("cls."),
        "segmentation": lambda k: k.startswith(f"seg.{variant}."),
        "demographics": lambda k: k.startswith("demo.") and k.endswith(f".{variant}"),
    }.get(task)
    if belongs is None:
        raise ValueError(f"unknown head {head!r}")
    return {k: v for k, v in metrics.items() if belongs(k)}


def check_encoder(encoder: DinoViT, prep: EncoderPreprocessing) -> None:
    """The processor's image size must tile into whole patches."""
    p = encoder.patch_size
    if prep.image_size % p:
        raise HeadsConfigError(
            f"encoder input size {prep.image_size} is not a multiple of its patch size {p}: "
            f"the patch grid would not cover the image; re-export the encoder with image_size "
            f"{prep.image_size // p * p} or {(prep.image_size // p + 1) * p}"
        )


def data_digest(data_dir: Path, data_version: str) -> str:
    """The data version when given (DVC md5), else a digest of the manifest file."""
    if data_version:
        return hashlib.sha256(data_version.encode()).hexdigest()
    return file_digest([Dataset(data_dir).manifest_path])


def train_heads(
    data_dir: Path,
    encoder_dir: Path,
    *,
    config: HeadsConfig,
    out_dir: Path,
    data_version: str = "",
    encoder_version: str = "",
) -> HeadsResult:
    """Classification, segmentation and demographics heads per `config`; files under out_dir."""
    data_dir, encoder_dir, out_dir = Path(data_dir), Path(encoder_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = load_manifest(data_dir)
    frames = {s: split_frame(df, s) for s in SPLITS}
    encoder, prep = load_encoder(encoder_dir)
    check_encoder(encoder, prep)
    encoder = encoder.to(config.device)
    result = HeadsResult(encoder_digest=encoder_digest(encoder_dir))
    result.data_digest = data_digest(data_dir, data_version)
    ctx = _Context(
        data_dir,
        encoder,
        prep,
        config,
        out_dir,
        result,
        encoder_version,
        data_version,
        FeatureCache(Path(config.cache_dir) if config.cache_dir else out_dir / "feature_cache"),
    )
    needs_tokens = config.classification.enabled or config.demographics.enabled
    tokens = ctx.token_features(frames) if needs_tokens else {}
    tables = [f"# Heads on encoder `{encoder_version or result.encoder_digest[:12]}`", ""]
    if config.classification.enabled and not has_labels(df, config.classification.findings):
        tables.append(_not_run(result, CLASSIFICATION, NO_LABELS))
    elif config.classification.enabled:
        tables.append(classification_table(ctx.classification(frames, tokens)))
    if config.segmentation.enabled and not has_masks(df):
        tables.append(_not_run(result, SEGMENTATION, NO_MASKS))
    elif config.segmentation.enabled:
        tables.append(segmentation_table(ctx.segmentation(frames)))
    if config.demographics.enabled:
        tables.append(demographics_table(ctx.demographics(frames, tokens)))
    result.markdown = "\n".join(tables)
    result.markdown_path = out_dir / "heads.md"
    result.markdown_path.write_text(result.markdown)
    return result


@dataclass
class _Context:
    """Shared state of one `train_heads` call."""

    data_dir: Path
    encoder: DinoViT
    prep: EncoderPreprocessing
    config: HeadsConfig
    out_dir: Path
    result: HeadsResult
    encoder_version: str
    data_version: str
    cache: FeatureCache

    def dataset(self, frame: pd.DataFrame, **kw: object) -> ImageDataset:
        return ImageDataset(self.data_dir, frame, self.prep, fit=self.config.fit, **kw)

    def cache_key(self, layers: tuple[int, ...] = ()) -> str:
        r = self.result
        return self.cache.key(
            r.encoder_digest, r.data_digest, self.prep.image_size, self.config.fit, layers
        )

    def features(
        self, frame: pd.DataFrame, layers: tuple[int, ...] = ()
    ) -> dict[str, torch.Tensor]:
        return self.cache.get(
            self.cache_key(layers),
            self.encoder,
            self.dataset(frame),
            batch_size=self.config.feature_batch_size,
            layers=layers,
            device=self.config.device,
        )

    def token_features(self, frames: dict[str, pd.DataFrame]) -> dict[str, dict[str, torch.Tensor]]:
        """CLS / mean-patch tokens per split, through the cache (one entry for all splits)."""
        everything = pd.concat(list(frames.values()), ignore_index=True)
        feats = self.features(everything)
        out, start = {}, 0
        for s, f in frames.items():
            out[s] = {k: v[start : start + len(f)] for k, v in feats.items()}
            start += len(f)
        return out

    def card(self, kind: str, names: list[str], shape: list[int], **kw: object) -> HeadCard:
        prep = {
            "mean": self.prep.mean,
            "std": self.prep.std,
            "image_size": self.prep.image_size,
            "fit": self.config.fit,
        }
        return HeadCard(
            kind=kind,
            names=names,
            input_shape=shape,
            encoder_digest=self.result.encoder_digest,
            encoder_version=self.encoder_version,
            data_version=self.data_version,
            preprocessing=prep,
            **kw,  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------ classification

    def classification(
        self, frames: dict[str, pd.DataFrame], tokens: dict[str, dict[str, torch.Tensor]]
    ) -> ClassificationResult:
        cfg, device = self.config.classification, self.config.device
        augmented = None
        if cfg.mode == "augmented":
            aug = classification_augment(self.prep.image_size)

            def augmented(train: pd.DataFrame, y: torch.Tensor):
                ds = self.dataset(train, augment=aug)
                batches = image_batches(self.encoder, ds, y, cfg.features, cfg.batch_size, device)
                return batches, math.ceil(len(ds) / cfg.batch_size)

        res = run_classification(
            tokens, frames, cfg, seed=self.config.seed, augmented=augmented, device=device
        )
        self.result.classification = res
        png = pr_curves_png(res.curves, self.out_dir / "classification_pr_curves.png", "test PR")
        curves = self.out_dir / "classification_curves.json"
        curves.write_text(json.dumps(res.curves))
        self.result.artifacts += [png, curves]
        summary = res.summary()
        card = self.card(
            "classification",
            res.findings,
            [int(res.probe.linear.in_features)],
            input="features",
            feature_kind=cfg.features,
            metrics={f: {m: v[0] for m, v in s.items()} for f, s in summary.items()},
        )
        self.result.exported["classification"] = export_head(
            Sigmoid(res.probe), card, self.out_dir / "export" / "classification"
        )
        return res

    # ------------------------------------------------------------ segmentation

    def segmentation(self, frames: dict[str, pd.DataFrame]) -> list[SegmentationResult]:
        cfg = self.config.segmentation
        masked = {s: f[f["mask_path"].notna()].reset_index(drop=True) for s, f in frames.items()}
        for s, f in masked.items():
            if f.empty:
                raise HeadsConfigError(
                    f"split {s} has no image with a mask: segmentation needs masks in "
                    "train, val and test (or disable segmentation)"
                )
        structures = choose_structures(self.data_dir, masked["train"], cfg)
        depth = self.encoder.n_blocks
        layers = cfg.layers or default_layers(depth)
        if any(not 0 <= i < depth for i in layers):
            raise HeadsConfigError(
                f"segmentation.layers {layers} outside the encoder's 0..{depth - 1}"
            )
        log.info("segmenting %s with layers %s", structures, layers)
        data = {}
        for s, f in masked.items():
            ds = self.dataset(f, structures=structures)
            masks = torch.stack([ds.masks(i) for i in range(len(ds))]).float()
            if cfg.mode == "cached" or s != "train":
                maps = (
                    self.features(f, tuple(layers))["layers"]
                    if cfg.mode == "cached"
                    else extract_features(
                        self.encoder,
                        ds,
                        batch_size=self.config.feature_batch_size,
                        layers=layers,
                        device=self.config.device,
                    )["layers"]
                )
            else:
                maps = torch.empty(0)
            data[s] = (maps, masks)
        n_train = len(masked["train"])
        if n_train < 2:
            raise HeadsConfigError("segmentation needs at least 2 train images with masks")
        from cxrflow.evaluation.segmentation import PER_IMAGE_FILE

        (self.out_dir / PER_IMAGE_FILE).unlink(missing_ok=True)  # rebuilt by this run
        steps = math.ceil(n_train / cfg.batch_size)
        if cfg.mode == "cached":
            batches = map_batches(*data["train"], cfg.batch_size)
        else:
            batches = self._augmented_seg_batches(masked["train"], structures, tuple(layers))
        results = []
        embed = self.encoder.embed_dim
        for name in cfg.decoders:
            torch.manual_seed(self.config.seed)
            decoder = make_decoder(name, embed, len(structures), self.prep.image_size, cfg.channels)
            run = train_decoder(
                decoder,
                batches,
                cfg,
                steps_per_epoch=steps,
                val=data["val"],
                seed=self.config.seed,
                lr=cfg.lr_for(name),
            )
            res = evaluate(name, run, structures, *data["test"])
            results.append(res)
            self._seg_artifacts(res, masked["test"], structures, data["test"][1], layers)
        self.result.segmentation = results
        return results

    def _augmented_seg_batches(
        self, train: pd.DataFrame, structures: list[str], layers: tuple[int, ...]
    ):
        cfg, device = self.config.segmentation, self.config.device
        ds = self.dataset(
            train, structures=structures, augment=segmentation_augment(tuple(structures))
        )

        def batches(gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            self.encoder.eval()  # frozen: deterministic, as for the cached maps
            for batch in DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, generator=gen):
                with torch.no_grad():
                    maps = encode_batch(self.encoder, batch["pixels"].to(device), layers)["layers"]
                yield maps, batch["masks"].to(device)

        return batches

    def _seg_artifacts(
        self,
        res: SegmentationResult,
        test: pd.DataFrame,
        structures: list[str],
        masks: torch.Tensor,
        layers: tuple[int, ...],
    ) -> None:
        # Per-image Dice of every decoder, for the evaluation's fairness strata (C.6).
        from cxrflow.evaluation.segmentation import PER_IMAGE_FILE, per_image_dice

        rows = per_image_dice(
            res.test_probs.numpy(),
            masks.numpy(),
            structures,
            test["image_id"].tolist(),
            res.decoder_name,
        )
        per_image = self.out_dir / PER_IMAGE_FILE
        if per_image.is_file():
            rows = pd.concat([pd.read_parquet(per_image), rows], ignore_index=True)
        rows.to_parquet(per_image, index=False)
        if per_image not in self.result.artifacts:
            self.result.artifacts.append(per_image)
        n = min(self.config.segmentation.overlays, len(test))
        if n:
            ds = self.dataset(test)
            images = np.stack([ds.image(i)[0].numpy() for i in range(n)])
            png = overlays_png(
                images,
                masks[:n].bool().numpy(),
                (res.test_probs[:n] > 0.5).numpy(),
                structures,
                self.out_dir / f"segmentation_{res.decoder_name}_overlays.png",
                f"{res.decoder_name} on test",
            )
            self.result.artifacts.append(png)
        card = self.card(
            f"segmentation-{res.decoder_name}",
            structures,
            [len(layers), self.encoder.embed_dim, *self.encoder.patch_grid(self.prep.image_size)],
            input="maps",
            layers=list(layers),
            metrics={s: {"dice": d.mean, "dice_std": d.std} for s, d in res.dice.items()},
        )
        self.result.exported[f"segmentation-{res.decoder_name}"] = export_head(
            Sigmoid(res.run.decoder),
            card,
            self.out_dir / "export" / f"segmentation-{res.decoder_name}",
        )

    # ------------------------------------------------------------ demographics

    def demographics(
        self, frames: dict[str, pd.DataFrame], tokens: dict[str, dict[str, torch.Tensor]]
    ) -> DemographicsResult:
        cfg = self.config.demographics
        names = list(cfg.splits)
        df = pd.concat([frames[s] for s in names], ignore_index=True)
        x = torch.cat([select(tokens[s], cfg.features) for s in names]).numpy()
        res = run_demographics(x, df, cfg, seed=self.config.seed)
        self.result.demographics = res
        for target, model in res.models.items():
            score = res.scores[target]
            lr = model.steps[-1][1]
            classes = [score.classes[int(c)] for c in lr.classes_]
            card = self.card(
                f"demographics-{target}",
                classes,
                [int(x.shape[1])],
                input="features",
                feature_kind=cfg.features,
                output="softmax",
                metrics={"accuracy": score.accuracy, "accuracy_std": score.std},
            )
            self.result.exported[f"demographics-{target}"] = export_head(
                logistic_module(model), card, self.out_dir / "export" / f"demographics-{target}"
            )
        return res
