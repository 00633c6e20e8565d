"""Counters of a running target as a tree (JSON for the API and `sanlab target stats`) and as Prometheus text
(a per-target CollectorRegistry with a custom collector: figures are read when scraped, nothing is kept twice).

Levels: target, TPG, LUN (the storage object behind a TPG LUN), session, connection. A level's figures are the
sum of its live connections plus what ended connections left behind (`TargetServer.retired`, session.io_retired).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from target.metrics.counters import COUNTER_FIELDS, IoStats


def _link_stats(link: Any) -> IoStats:
    s = IoStats().add(link.stats)
    s.digest_errors += getattr(link.conn, "digest_errors", 0)
    return s


def snapshot(rt: Any, server: Any = None) -> dict[str, Any]:
    """{"targets": [{name, totals, tpgs: [{tag, totals, luns: [...], sessions: [{..., connections}]}]}]}."""
    links = server.links() if server is not None else []
    by_session: dict[int, list[Any]] = {}
    for link in links:
        by_session.setdefault(id(link.conn.session), []).append(link)
    sessions_by_tpg: dict[tuple[str, int], list[Any]] = {}
    for s in rt.sessions:
        if not s.discovery:
            sessions_by_tpg.setdefault((s.nexus.target_name, s.nexus.tpg_tag), []).append(s)
    retired = server.retired if server is not None else {}
    out_targets = []
    for t in rt.config.targets:
        t_total = IoStats()
        tpgs = []
        for tpg in t.tpgs:
            key = (t.wwn, tpg.tag)
            tpg_total = IoStats()
            if key in retired:
                tpg_total.add(retired[key])
            sessions = []
            for s in sessions_by_tpg.get(key, []):
                conns = []
                s_total = IoStats()
                if getattr(s, "io_retired", None) is not None:
                    s_total.add(s.io_retired)
                for link in by_session.get(id(s), []):
                    cs = _link_stats(link)
                    s_total.add(cs)
                    tpg_total.add(cs)
                    conns.append(
                        {
                            "cid": link.conn.cid,
                            "local": f"{link.local[0]}:{link.local[1]}",
                            "peer": f"{link.peer[0]}:{link.peer[1]}" if link.peer else "",
                            "stats": cs.as_dict(),
                        }
                    )
                sessions.append(
                    {
                        "initiator": s.nexus.initiator_name,
                        "isid": f"0x{s.nexus.isid:012x}",
                        "tsih": s.tsih,
                        "stats": s_total.as_dict(),
                        "connections": conns,
                    }
                )
            luns = []
            for lun in tpg.luns:
                lu = rt.lus.get(lun.storage_object)
                st = getattr(lu, "io_stats", None) if lu is not None else None
                luns.append(
                    {
                        "lun": lun.index,
                        "storage_object": lun.storage_object,
                        "stats": (st or IoStats()).as_dict(),
                    }
                )
            t_total.add(tpg_total)
            tpgs.append({"tag": tpg.tag, "stats": tpg_total.as_dict(), "luns": luns, "sessions": sessions})
        out_targets.append({"name": t.wwn, "stats": t_total.as_dict(), "tpgs": tpgs})
    return {"targets": out_targets}


class TargetCollector:
    """prometheus_client collector reading `snapshot` at scrape time."""

    def __init__(self, rt: Any, server: Any = None) -> None:
        self.rt = rt
        self.server = server

    def collect(self) -> Iterator[Metric]:
        snap = snapshot(self.rt, self.server)
        levels: dict[str, list[tuple[list[str], dict[str, Any]]]] = {
            "target": [],
            "tpg": [],
            "lun": [],
            "session": [],
            "connection": [],
        }
        for t in snap["targets"]:
            levels["target"].append(([t["name"]], t["stats"]))
            for g in t["tpgs"]:
                tpg = [t["name"], str(g["tag"])]
                levels["tpg"].append((tpg, g["stats"]))
                for lun in g["luns"]:
                    levels["lun"].append(([*tpg, str(lun["lun"]), lun["storage_object"]], lun["stats"]))
                for s in g["sessions"]:
                    sess = [*tpg, s["initiator"], s["isid"]]
                    levels["session"].append((sess, s["stats"]))
                    for c in s["connections"]:
                        levels["connection"].append(([*sess, str(c["cid"])], c["stats"]))
        label_names = {
            "target": ["target"],
            "tpg": ["target", "tpg"],
            "lun": ["target", "tpg", "lun", "backstore"],
            "session": ["target", "tpg", "initiator", "isid"],
            "connection": ["target", "tpg", "initiator", "isid", "cid"],
        }
        for level, rows in levels.items():
            labels = label_names[level]
            for name in COUNTER_FIELDS:
                fam = CounterMetricFamily(
                    f"sanlab_{level}_{name}", f"{name.replace('_', ' ')} per {level}", labels=labels
                )
                for values, stats in rows:
                    fam.add_metric(values, stats[name])
                yield fam
            hist = HistogramMetricFamily(
                f"sanlab_{level}_command_latency_seconds", f"SCSI command latency per {level}", labels=labels
            )
            for values, stats in rows:
                hist.add_metric(
                    values,
                    buckets=list(stats["latency_histogram"].items()),
                    sum_value=stats["latency_seconds_sum"],
                )
            yield hist


def make_registry(rt: Any, server: Any = None) -> CollectorRegistry:
    """A per-target registry (never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TargetCollector(rt, server))
    return registry


def prometheus_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
