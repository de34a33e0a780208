"""Scoring commands: score (run the detector or import its predictions), train, evaluate."""

from __future__ import annotations

from pathlib import Path

import click

from curation.cli import json_option, pass_app


def _coco_dir(path: str) -> tuple[Path, Path]:
    """A COCO folder (annotations.json + images/) or a COCO file (images next to it in images/)."""
    from curation.errors import InputError

    root = Path(path)
    coco = root / "annotations.json" if root.is_dir() else root
    images = coco.parent / "images"
    if not coco.is_file():
        raise InputError(f"{path!r} has no annotations.json; pass a folder written by 'beltcurate synth' or an export")
    return coco, images


@click.command("score")
@click.option("--model", "checkpoint", type=click.Path(dir_okay=False),
              help="Detector checkpoint (default: setting model.checkpoint).")
@click.option("--predictions", type=click.Path(exists=True, dir_okay=False),
              help="Import a COCO results JSON instead of running a detector.")
@click.option("--model-version", help="With --predictions: name of the detector that made them.")
@click.option("--images-json", type=click.Path(exists=True, dir_okay=False),
              help="With --predictions: COCO file whose images map image_id -> file_name (matched to frame paths).")
@click.option("--classes", "classes_file", type=click.Path(exists=True, dir_okay=False),
              help="With --predictions: class map (YAML/JSON list); category_id k = k-th class (1-based).")
@click.option("--embeddings", type=click.Path(exists=True, dir_okay=False),
              help="With --predictions: .npz with image_ids + embeddings, or .npy rows in --images-json order.")
@click.option("--limit", type=int, help="Score at most this many frames (the oldest unscored first).")
@click.option("--site", help="Only frames of this site.")
@click.option("--engine", type=click.Choice(["local", "ray"]), help="Default: setting score.engine.")
@click.option("--batch-size", type=int, help="Frames per forward (default: setting score.batch_size).")
@click.option("--workers", type=int, help="Decode workers (default: setting score.workers).")
@click.option("--chunk-size", type=int, help="Frames per catalog commit (default: setting score.chunk_size).")
@click.option("--tta-flip/--no-tta-flip", default=None, help="Add a flipped pass and score flip_instability.")
@json_option
@pass_app
def score(app, checkpoint, predictions, model_version, images_json, classes_file, embeddings, limit, site, engine,
          batch_size, workers, chunk_size, tta_flip) -> None:
    """Score every frame not yet scored by the model: boxes, uncertainty, embedding.

    Resumable: each chunk of frames is committed at once, so after a crash a rerun continues
    where it stopped, without duplicates. Frames already scored by this model version are skipped.

    \b
    Examples:
      beltcurate score --model models/demo_fcos_mnv3s.pt
      beltcurate score --model models/demo_fcos_mnv3s.pt --site east --limit 1000 --json
      beltcurate score --model models/demo_fcos_mnv3s.pt --engine ray
      beltcurate score --predictions yolo_results.json --model-version yolo-robot-7 \\
          --images-json frames.json --classes classes.yaml --embeddings emb.npz
    """
    from curation.progress import progress_bar
    from curation.runs import recorded_run
    from curation.scoring import import_predictions, score_frames

    settings = app.settings.with_overrides(score__engine=engine, score__batch_size=batch_size, score__workers=workers,
                                           score__chunk_size=chunk_size, score__tta_flip=tta_flip)
    args = dict(checkpoint=checkpoint, predictions=predictions, limit=limit, site=site, engine=settings["score.engine"])
    with recorded_run(app.catalog, "score", args) as run, progress_bar(None, "score", enabled=app.show_progress) as advance:
        if predictions:
            summary = import_predictions(app.catalog, settings, predictions, model_version=model_version,
                                         images_json=images_json, classes_file=classes_file, embeddings=embeddings,
                                         advance=advance)
        else:
            from curation.errors import ConfigError

            checkpoint = checkpoint or settings["model.checkpoint"]
            if not checkpoint:
                raise ConfigError("no detector: pass --model CKPT (or --predictions FILE), or set model.checkpoint")
            summary = score_frames(app.catalog, settings, settings.resolve_path(checkpoint), limit=limit, site=site,
                                   engine=settings["score.engine"], advance=advance)
        run.counts = summary.as_dict()
    app.emit(
        summary.as_dict(),
        lambda d: f"scored {d['scored']} frame(s) with {d['model_version']} ({d['engine']}), "
        f"{d['already_scored']} already scored, {d['remaining']} left; {d['frames_per_s']} frames/s",
    )


@click.command("train")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="COCO folder (annotations.json + images/) to train on.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write (.pt).")
@click.option("--arch", default="fcos_mnv3s", show_default=True, help="Architecture (see docs/scoring.md).")
@click.option("--epochs", type=float, help="Passes over the data (sets the LR schedule).")
@click.option("--max-iters", type=int, help="Optimizer steps instead of epochs.")
@click.option("--minutes", type=float, help="Wall-clock budget; stops early when reached.")
@click.option("--seed", default=0, show_default=True)
@click.option("--init", "init_checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Warm start from this checkpoint (same arch and classes).")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--lr", type=float, help="Peak learning rate (AdamW, cosine).")
@click.option("--input-size", default="256x192", show_default=True, help="WIDTHxHEIGHT the model resizes frames to.")
@click.option("--val", "val_data", type=click.Path(exists=True), help="COCO folder to evaluate on afterwards.")
@click.option("--model-version", help="Name recorded with every prediction (default: <arch>-<out stem>-s<seed>).")
@json_option
@pass_app
def train(app, data, out, arch, epochs, max_iters, minutes, seed, init_checkpoint, batch_size, lr, input_size,
          val_data, model_version) -> None:
    """Train the reference detector from scratch (or fine-tune it) on a COCO folder.

    Production training stays in your own pipeline; this exists for the demo and the
    active-learning simulation. The checkpoint loads with 'beltcurate score --model'.

    \b
    Examples:
      beltcurate synth data/train --frames 1500 --seed 1
      beltcurate train --data data/train --out models/demo.pt --arch fcos_mnv3s --epochs 5 --seed 1
      beltcurate train --data data/round2 --out models/r2.pt --init models/demo.pt --max-iters 140
    """
    from curation.errors import InputError
    from curation.progress import progress_bar

    from active_learning.train import DEFAULT_LR, train_detector

    try:
        size = [int(v) for v in input_size.lower().split("x")]
        assert len(size) == 2 and min(size) > 0
    except (ValueError, AssertionError):
        raise InputError(f"--input-size {input_size!r} is not WIDTHxHEIGHT (e.g. 256x192)") from None
    coco, images = _coco_dir(data)
    val_coco, val_images = _coco_dir(val_data) if val_data else (None, None)
    with progress_bar(None, "train", enabled=app.show_progress) as advance:
        summary = train_detector(
            coco, images, out, arch=arch, epochs=epochs, max_iters=max_iters,
            time_budget_s=minutes * 60 if minutes else None, seed=seed, init_checkpoint=init_checkpoint,
            batch_size=batch_size, lr=lr or DEFAULT_LR, input_size=size, model_version=model_version,
            val_coco_json=val_coco, val_image_root=val_images, advance=advance,
        )
    app.emit(
        summary.as_dict(),
        lambda d: f"trained {d['arch']} for {d['iterations']} iterations ({d['epochs']} epochs) in {d['seconds']} s "
        f"({d['images_per_s']} img/s); wrote {d['out']} ({d['model_version']})"
        + (f"\nmAP@0.5 {d['eval']['map50']:.3f}, mAP@[.5:.95] {d['eval']['map']:.3f} on {d['eval']['n_images']} images"
           if d.get("eval") else ""),
    )


@click.command("evaluate")
@click.option("--model", "checkpoint", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True), help="COCO folder with ground truth.")
@click.option("--limit", type=int, help="Only the first N images.")
@json_option
@pass_app
def evaluate_cmd(app, checkpoint, data, limit) -> None:
    """COCO mAP of a detector checkpoint on a labeled folder (pycocotools).

    \b
    Example:
      beltcurate evaluate --model models/demo_fcos_mnv3s.pt --data data/test --json
    """
    from active_learning.train import evaluate

    coco, images = _coco_dir(data)
    result = evaluate(checkpoint, coco, images, limit=limit)
    app.emit(
        result,
        lambda d: f"{d['model_version']}: mAP@0.5 {d['map50']:.3f}, mAP@[.5:.95] {d['map']:.3f} on {d['n_images']} "
        f"images ({d['images_per_s']} img/s)\n"
        + "\n".join(f"  {name:<16} AP@0.5 {ap:.3f}" for name, ap in d["per_class_ap50"].items()),
    )


commands = [score, train, evaluate_cmd]
