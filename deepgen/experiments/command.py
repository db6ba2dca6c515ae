"""``deepgen demo`` and ``deepgen benchmark``: the commands that run the whole flow."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, help="Directory for everything the demo writes.")
@click.option("--quick", is_flag=True, help="Smaller corpus and fewer epochs (under 3 minutes on 2 cores).")
@click.option("--workers", default=2, show_default=True, help="Ray Train workers.")
@click.option("--seed", default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Reuse a non-empty --out.")
@click.option("--recipe", default="full", show_default=True, help="Packaged recipe to train.")
@click.option("--photos", multiple=True, type=click.Path(file_okay=False),
              help="Real face photos to train and test on too, repeatable (default: ../shared/data/real_faces and "
                   "real_faces_more when present).")
@click.option("--no-photos", is_flag=True, help="Procedural faces only, even when real photos are present.")
@click.option("--false-alarm", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="With photos: ship the point that flags at most this share of the validation people's real "
                   "videos (adapt threshold); 0 keeps the point balanced on all validation videos.")
def demo(out, quick, workers, seed, overwrite, recipe, photos, no_photos, false_alarm) -> None:
    """Synth -> manifest -> extract -> train -> evaluate -> score, with a summary table."""
    from deepgen.experiments.demo import demo as run

    run(out, quick=quick, workers=workers, seed=seed, overwrite=overwrite, recipe=recipe, photos=list(photos) or None,
        use_photos=not no_photos, false_alarm=false_alarm or None, log=click.echo)


@click.group("benchmark")
def benchmark() -> None:
    """Benchmarks that print a table (the performance ones live in benchmarks/)."""


@benchmark.command("generalization")
@click.option("--out", default="bench-out", show_default=True, help="Directory for data, runs, table and plots.")
@click.option("--recipe", "recipes", multiple=True, default=("erm", "sbi", "dann", "supcon", "full"),
              show_default=True, help="Packaged recipes to train and compare.")
@click.option("--protocol", type=click.Choice(["a", "b", "real", "realdf"]), default="a", show_default=True,
              help="a: train FF++-like, test the other four; b: leave one dataset out over all five; real: real "
                   "people from --photos, k-fold over people, leave-one-family-out, procedural -> real; realdf: "
                   "train on procedural + photo corpora, score the real deepfakes of ../shared/data/real_deepfakes.")
@click.option("--photos", multiple=True, type=click.Path(file_okay=False),
              help="Real face photos for --protocol real/realdf, repeatable (default: ../shared/data/real_faces "
                   "and real_faces_more when present).")
@click.option("--folds", default=3, show_default=True, help="Folds over people (--protocol real).")
@click.option("--real-part", "real_parts", multiple=True,
              type=click.Choice(["folds", "procedural", "lofo", "mixed"]),
              help="--protocol real: only these parts (repeatable; default all, only folds with --ablate).")
@click.option("--seeds", default=1, show_default=True, help="Train every recipe this many times (mean ± std).")
@click.option("--ablate", is_flag=True, help="Train full and full with each component switched, instead of --recipe.")
@click.option("--ablation", "ablations", multiple=True,
              help="Only this ablation row (with full), e.g. --ablation=+strong_perturb; repeatable; implies --ablate.")
@click.option("--videos", default=720, show_default=True, help="FF++-like media items (half real sources).")
@click.option("--test-videos", default=200, show_default=True, help="Media items of every other preset.")
@click.option("--frames", default=4, show_default=True, help="Frames per clip (all sampled).")
@click.option("--epochs", default=0, show_default=True, type=int, help="Every recipe's epochs (0: the recipe's own).")
@click.option("--crop-size", default=96, show_default=True, help="Side of the extracted face crops.")
@click.option("--image-size", default=0, show_default=True, help="Every recipe's model input side (0: the recipe's own).")
@click.option("--workers", default=2, show_default=True, help="Ray Train workers.")
@click.option("--seed", default=0, show_default=True, help="Data seed and the first training seed.")
@click.option("--backbone", default=None, help="Override every recipe's timm backbone (e.g. efficientnet_b0).")
@click.option("--real-deepfakes", type=click.Path(exists=True, file_okay=False), default=None,
              help="The real deepfakes folder --protocol realdf scores (default: ../shared/data/real_deepfakes).")
def generalization(out, recipes, protocol, photos, folds, real_parts, seeds, ablate, ablations, videos, test_videos, frames, epochs,
                   crop_size, image_size, workers, seed, backbone, real_deepfakes) -> None:
    """Recipes side by side on datasets they never saw (protocol a or b), seeds and ablations."""
    from deepgen.experiments.benchmark import generalization as run

    run(out, tuple(recipes), videos=videos, test_videos=test_videos, frames=frames, epochs=epochs or None,
        workers=workers, seed=seed, backbone=backbone, crop_size=crop_size, image_size=image_size or None,
        seeds=seeds, protocol=protocol, ablate=tuple(ablations) or ablate, photos=list(photos) or None, folds=folds,
        real_parts=tuple(real_parts) or None, real_deepfakes=real_deepfakes, log=click.echo)


@benchmark.command("realdf-head")
@click.option("--bundle", "bundles", multiple=True, required=True, type=click.Path(exists=True),
              help="A trained bundle, repeatable: one per seed (mean ± std over them).")
@click.option("--out", default="bench-realdf-head", show_default=True, help="Directory for faces and the table.")
@click.option("--real-deepfakes", type=click.Path(file_okay=False), default=None,
              help="The real deepfakes folder (default: ../shared/data/real_deepfakes when present).")
@click.option("--folds", default=5, show_default=True, help="Folds over the real items, grouped by person.")
@click.option("--frames", default=16, show_default=True, help="Frames sampled a video.")
@click.option("--crop-size", default=96, show_default=True, help="Side of the extracted crops (the bundles' own).")
@click.option("--seed", default=0, show_default=True, help="Seed of the fold assignment and the head fits.")
def realdf_head(bundles, out, real_deepfakes, folds, frames, crop_size, seed) -> None:
    """A head fitted on real forgeries, scored on real forgeries of other people (grouped folds), against
    the bundle as it is."""
    import time

    from deepgen.experiments.benchmark import publish_table
    from deepgen.experiments.realdf import prepare_real_deepfakes, require_real_deepfakes
    from deepgen.experiments.realdf_head import head_cross_validation, summarize_head

    t0 = time.perf_counter()
    root = require_real_deepfakes(real_deepfakes, "realdf-head")
    df = prepare_real_deepfakes(out, root, frames, crop_size, click.echo)
    raw = head_cross_validation(list(bundles), df, folds=folds, seed=seed, log=click.echo)
    publish_table(out, "realdf-head", raw, summarize_head(raw),
                  {"bundles": list(bundles), "folds": folds, "frames": frames, "seed": seed}, t0, click.echo)


@benchmark.command("sampling")
@click.option("--bundle", "bundles", multiple=True, required=True, type=click.Path(exists=True),
              help="A trained bundle, repeatable: one per seed (mean ± std over them).")
@click.option("--out", default="bench-sampling", show_default=True, help="Directory for data, faces and the table.")
@click.option("--frames", default=32, show_default=True, help="Frames scored a video, both samplings.")
@click.option("--clip-len", default=8, show_default=True, help="Consecutive frames a run under clips.")
@click.option("--videos", default=60, show_default=True, help="Videos of the photo and procedural sets.")
@click.option("--video-frames", default=96, show_default=True, help="Frames a rendered video (12 fps).")
@click.option("--photos", multiple=True, type=click.Path(file_okay=False),
              help="Real face photos for the photo set, repeatable (default: the shared photo folders).")
@click.option("--real-deepfakes", type=click.Path(file_okay=False), default=None,
              help="The real deepfakes folder (default: ../shared/data/real_deepfakes when present).")
@click.option("--crop-size", default=96, show_default=True, help="Side of the extracted crops (the bundles' own).")
@click.option("--seed", default=1000, show_default=True, help="Seed of the rendered sets (unseen by training).")
def sampling(bundles, out, frames, clip_len, videos, video_frames, photos, real_deepfakes, crop_size, seed) -> None:
    """clips against uniform sampling: the same bundles score the same videos sampled both ways."""
    import time

    from deepgen.experiments.benchmark import publish_table
    from deepgen.experiments.sampling import compare_sampling, summarize_sampling

    t0 = time.perf_counter()
    raw = compare_sampling(out, list(bundles), frames=frames, clip_len=clip_len, videos=videos,
                           video_frames=video_frames, photos=list(photos) or None, real_deepfakes=real_deepfakes,
                           crop_size=crop_size, seed=seed, log=click.echo)
    publish_table(out, "sampling", raw, summarize_sampling(raw),
             {"frames": frames, "clip_len": clip_len, "videos": videos, "video_frames": video_frames,
              "bundles": list(bundles)}, t0, click.echo)
