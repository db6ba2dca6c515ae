"""``deepgen tune``: a Ray Tune sweep of the loss weights and learning rate, scored on held-out datasets."""

from __future__ import annotations

import math

import click


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


@click.command("tune")
@click.option("--config", "config", default="tune", show_default=True,
              help="Sweep file: base recipe, search space, objective, scheduler.")
@click.option("--faces", "faces", multiple=True, required=True, help="Faces table to train on; repeat to mix.")
@click.option("--heldout", "heldout", multiple=True, required=True,
              help="Faces table never trained on, scored every epoch; repeat for several datasets.")
@click.option("--out", required=True, help="Sweep directory (results.csv, pareto.png, best_config.yaml, best_bundle).")
@click.option("--trials", required=True, type=int, help="Number of trials (Train runs).")
@click.option("--objective", type=click.Choice(["min_auc", "mean_auc", "weighted"]), default=None,
              help="Objective over the held-out AUCs [default: the sweep file's].")
@click.option("--weight", type=float, default=None, help="weighted: share of min_auc [default: the sweep file's].")
@click.option("--search", type=click.Choice(["optuna", "random"]), default=None, help="Search algorithm.")
@click.option("--asha/--no-asha", default=None, help="ASHA early stopping [default: the sweep file's].")
@click.option("--epochs", type=int, default=None, help="Epochs per trial [default: the sweep file's].")
@click.option("--workers", type=int, default=None, help="Ray Train workers per trial [default: the sweep file's].")
@click.option("--address", default=None, help="Ray cluster address (default: an embedded Ray).")
@click.option("--resume", is_flag=True, help="Continue the interrupted sweep in --out (Tuner.restore).")
@click.option("--quiet", is_flag=True, help="No per-trial progress lines on stderr.")
def tune(config: str, faces: tuple[str, ...], heldout: tuple[str, ...], out: str, trials: int,
         objective: str | None, weight: float | None, search: str | None, asha: bool | None, epochs: int | None,
         workers: int | None, address: str | None, resume: bool, quiet: bool) -> None:
    """Sweep lambda_domain, lambda_supcon, lambda_method, lr and sbi_prob; keep the best held-out recipe."""
    from deepgen.tune.sweep import tune_sweep

    s = tune_sweep(config, list(faces), list(heldout), out, trials, objective=objective, weight=weight,
                   search=search, asha=asha, workers=workers, address=address, resume=resume, epochs=epochs,
                   quiet=quiet)
    rows = s["rows"]
    columns = [c for c in rows[0] if c not in ("bundle",)]
    click.echo("  ".join(columns))
    for r in rows:
        click.echo("  ".join(_fmt(r.get(c, "")) for c in columns))
    best = s["best"]
    click.echo(f"best trial {best['trial_id']}: {s['objective']} {best['objective']:.4f} (mean AUC "
               f"{best['mean_auc']:.4f}, min AUC {best['min_auc']:.4f}); {s['trials']} trials {s['counts']} in "
               f"{s['seconds']:.0f} s")
    for key in ("results", "pareto", "best_config", "best_bundle"):
        click.echo(f"{key}: {s[key]}")
