"""Release the placement group of a Train run whose controller died (a trial ASHA stopped).

Ray Train V2 frees it with a cleaner actor that asks Ray's State API whether the controller is alive;
on a Ray started without the dashboard (deepgen's embedded Ray) that API is absent, the group stays
reserved until the driver exits, and the next trial waits for CPUs forever. The GCS itself records
whether a group's creator actor is dead, so a trial removes such orphans before and while it trains.
"""

from __future__ import annotations

import threading

import ray


def release_orphaned_placement_groups() -> list[str]:
    """Remove live (non-detached) placement groups whose creator actor is dead; return their ids."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    removed = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        live = pg.state in (gcs_pb2.PlacementGroupTableData.CREATED, gcs_pb2.PlacementGroupTableData.PENDING,
                            gcs_pb2.PlacementGroupTableData.RESCHEDULING)
        by_actor = bool(pg.creator_actor_id) and not ray.ActorID(pg.creator_actor_id).is_nil()  # not a driver's
        if live and by_actor and pg.creator_actor_dead and not pg.is_detached:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(pg.placement_group_id)))
            removed.append(pg.placement_group_id.hex())
    return removed


class OrphanReaper:
    """Context manager: release orphaned placement groups now and every ``interval_s`` until exit."""

    def __init__(self, interval_s: float = 2.0):
        self.interval_s = interval_s
        self.removed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="deepgen-pg-reaper")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.removed += release_orphaned_placement_groups()
            except Exception:  # best effort: never let cleanup break a trial
                pass
            self._stop.wait(self.interval_s)

    def __enter__(self) -> OrphanReaper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
