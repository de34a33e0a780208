"""``beltcurate simulate``: active learning against random with an oracle (labels already known)."""

from __future__ import annotations

import click

from curation.cli import json_option, pass_app


def _csv(_ctx, _param, value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@click.command("simulate")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True),
              help="Labeled set: COCO file or folder with annotations.json, or a YOLO folder with data.yaml.")
@click.option("--strategies", default="random,uncertainty,coreset,hybrid", show_default=True, callback=_csv,
              help="Comma-separated strategies; 'random' is the reference for label efficiency. Parameters "
                   "after the name run a variant beside the default: hybrid:diversity=kcenter.")
@click.option("--rounds", default=5, show_default=True, help="Selection rounds after round 0.")
@click.option("--budget", default=40, show_default=True, help="Frames revealed per round.")
@click.option("--seeds", default=3, show_default=True, help="Seeds 0..N-1 (each: its own initial set).")
@click.option("--initial", default=100, show_default=True, help="Randomly drawn labeled frames in round 0.")
@click.option("--test-frames", default=1000, show_default=True,
              help="Frames held out for evaluation (whole sequences; a YOLO 'test' split is used as is).")
@click.option("--pool-frames", type=int, help="Cap the pool the strategies choose from (whole sequences).")
@click.option("--initial-iters", default=300, show_default=True, help="Round-0 training iterations from scratch.")
@click.option("--finetune-iters", default=50, show_default=True,
              help="Warm-started iterations per round (the same for every strategy).")
@click.option("--arch", default="fcos_mnv3s", show_default=True, help="Detector architecture (see 'beltcurate train').")
@click.option("--input-size", default="256x192", show_default=True, help="Detector input WIDTHxHEIGHT.")
@click.option("--uncertainty", default="entropy_sum", show_default=True, help="Uncertainty score the strategies rank by.")
@click.option("--out", "out_dir", default="simulation", show_default=True, type=click.Path(file_okay=False),
              help="Folder for results.json, curves.png and per-round checkpoints.")
@click.option("--cpu-lock", type=click.Path(dir_okay=False),
              help="flock file held during each round's training and evaluation (machines shared with other jobs).")
@click.option("--resume/--fresh", default=True, show_default=True,
              help="Continue the run already in OUT (finished rounds are kept, not redone), or start over.")
@json_option
@pass_app
def simulate(app, data_path, strategies, rounds, budget, seeds, initial, test_frames, pool_frames, initial_iters,
             finetune_iters, arch, input_size, uncertainty, out_dir, cpu_lock, resume) -> None:
    """Simulate labeling rounds with known labels and compare strategies against random.

    Each round every strategy fine-tunes its detector on its labeled frames (same iteration
    budget for all), is evaluated on a fixed test split (mAP@0.5, mAP@[.5:.95], rare-class AP),
    scores the pool and selects BUDGET frames whose labels are then revealed. Writes
    OUT/results.json (after every round) and OUT/curves.png (mean ± std over seeds). Run the
    same command again after a crash or Ctrl-C and it continues where it stopped.

    \b
    Examples:
      beltcurate synth data/belts --frames 2400
      beltcurate simulate --data data/belts --strategies random,uncertainty,coreset,hybrid \\
          --rounds 5 --budget 40 --seeds 3 --pool-frames 800
      beltcurate simulate --data data/belts --rounds 2 --budget 12 --initial 24 --seeds 1 \\
          --test-frames 100 --initial-iters 60 --finetune-iters 12 --json
    """
    from pathlib import Path

    from active_learning.simulate import SimConfig, file_lock, plot_curves, prepare_data, run_simulation
    from curation.errors import InputError

    try:
        width, height = (int(v) for v in input_size.lower().split("x"))
    except ValueError:
        raise InputError(f"--input-size {input_size!r} is not WIDTHxHEIGHT, e.g. 256x192") from None
    config = SimConfig(strategies=strategies, rounds=rounds, budget=budget, seeds=list(range(seeds)), initial=initial,
                       test_frames=test_frames, pool_frames=pool_frames, arch=arch, input_size=(width, height),
                       initial_iters=initial_iters, finetune_iters=finetune_iters, uncertainty=uncertainty).validate()
    data = prepare_data(data_path, test_frames=test_frames, pool_frames=pool_frames)
    log = (lambda m: click.echo(m, err=True)) if not app.json_output else (lambda m: None)
    kwargs = {"step_lock": file_lock(cpu_lock)} if cpu_lock else {}
    results = run_simulation(data, config, out_dir, log=log, resume=resume, **kwargs)
    png = plot_curves(results, Path(out_dir) / "curves.png")
    summary = results["summary"]
    app.emit({"out": str(out_dir), "curves_png": str(png), "elapsed_s": results["elapsed_s"], "summary": summary},
             lambda d: _text(d))


def _text(d: dict) -> str:
    lines = [f"results: {d['out']}/results.json  curves: {d['curves_png']}  ({d['elapsed_s']} s)"]
    for strategy, metrics in d["summary"].get("strategies", {}).items():
        e = metrics["map50"]
        reach = e.get("labels_to_reference_final")
        lines.append(f"  {strategy:<12} final mAP@0.5 {e['final_mean']:.3f} ± {e['std'][-1]:.3f}  AUC {e['auc_mean']:.3f}  "
                     f"labels to random's final: {'not reached' if reach is None else f'{reach:.0f}'}")
    return "\n".join(lines)


commands = [simulate]
