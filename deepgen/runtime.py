"""Start or join Ray: embedded and sized for this machine without an address, a cluster with one."""

from __future__ import annotations

import logging
import os

import ray


def init_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int | None = None) -> None:
    """Connect to ``address`` (``auto``, ``ray://…``) or start an embedded Ray; no-op if already up."""
    if ray.is_initialized():
        return
    quiet_ray_data()
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
        return
    store = (object_store_mb or 512) * 1024 * 1024
    # a private, single-user Ray: no token to manage (clusters keep Ray's default token auth)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        address="local",  # embedded: never join another cluster that happens to run on this machine
        num_cpus=num_cpus or os.cpu_count(),
        object_store_memory=store,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )


def quiet_ray_data() -> None:
    """deepgen prints its own progress; keep Ray Data's per-dataset log lines out of the terminal."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Ray Data reconfigures "ray.data" when it starts, but not its children: silence the warning that the
    # progress bars switched off above are off (deepgen.progress prints the stage's progress instead)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def map_actors(ds, fn, **kwargs):
    """``ds.map_batches(fn, **kwargs)`` on an actor pool whose actors are not restarted.

    Ray Data restarts dead actors by default, and Ray then logs an error line for every actor
    (its constructor arguments live in the object store, ray#53727). A dead actor fails the run
    instead: extraction and nightly rescoring commit chunks that survive it and resume from them.
    Ray 2.60 has no named parameter for max_restarts, hence the (deprecated) remote-args dict.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        return ds.map_batches(fn, max_restarts=0, **kwargs)
