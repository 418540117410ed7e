"""The dependency graph (networkx): built from the store's jobs and edges, or from the job
types when there are no jobs; cycles detected; rendered as text with states marked."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TypeVar

import networkx as nx

from dealertui.config import Config
from dealertui.model import STATE_GLYPH, DependencyGraph, GraphNode, Job
from dealertui.store import JobStore
from dealertui.store.reads.history import pipeline_jobs

MAX_CYCLES = 20
N = TypeVar("N", int, str)


def first_cycles(g: nx.DiGraph[N]) -> list[list[N]]:
    """The first MAX_CYCLES cycles of *g*: simple_cycles can be exponential, and the first
    few name the problem well enough. The one cycle finder (graphs of types and of jobs)."""
    return [list(c) for c in itertools.islice(nx.simple_cycles(g), MAX_CYCLES)]


def from_config(config: Config) -> DependencyGraph:
    nodes = {
        name: GraphNode(name, f"{name} (priority {jt.priority})", None, None, name)
        for name, jt in config.job_types.items()
    }
    edges = [(p, name) for name, jt in config.job_types.items() for p in jt.depends_on]
    g: nx.DiGraph[str] = nx.DiGraph(edges)
    g.add_nodes_from(nodes)
    return DependencyGraph(nodes, edges, first_cycles(g))


async def build(store: JobStore, config: Config, dealer_id: str | None = None) -> DependencyGraph:
    """Jobs (of one dealer, or all) and their edges; the job-type graph when there are none."""
    jobs = await store.list_jobs(dealer_id=dealer_id)
    if not jobs:
        return from_config(config)
    return _of_jobs(jobs, await store.edges(dealer_id=dealer_id), with_dealer=dealer_id is None)


def _of_jobs(jobs: Sequence[Job], edges: Sequence[tuple[int, int]], *, with_dealer: bool
             ) -> DependencyGraph:
    nodes = {
        str(j.id): GraphNode(
            str(j.id),
            f"{j.dealer_id} {j.job_type} #{j.id}" if with_dealer else f"{j.job_type} #{j.id}",
            j.state,
            j.dealer_id,
            j.job_type,
            j.pipeline_id,
        )
        for j in jobs
    }
    kept = [(str(p), str(c)) for p, c in edges if str(p) in nodes and str(c) in nodes]
    g: nx.DiGraph[str] = nx.DiGraph(kept)
    g.add_nodes_from(nodes)
    return DependencyGraph(nodes, kept, first_cycles(g))


async def current_pipeline(store: JobStore, config: Config, dealer_id: str) -> DependencyGraph:
    """The dealer's newest pipeline (the console's graph pane and `graph --dealer`), read
    alone: its older ones would crowd the drawing and cost a read of the whole history
    (`graph --pipeline ID` and `history` show them); the job types when it has none."""
    found = await pipeline_jobs(store, dealer_id=dealer_id)
    if found is None:
        return from_config(config)
    return _of_jobs(found.pipeline.jobs, found.edges, with_dealer=False)


async def one_pipeline(store: JobStore, pipeline_id: int) -> DependencyGraph | None:
    """Pipeline *pipeline_id* (`graph --pipeline ID`); None when there is none."""
    found = await pipeline_jobs(store, pipeline_id=pipeline_id)
    if found is None:
        return None
    return _of_jobs(found.pipeline.jobs, found.edges, with_dealer=False)


def to_networkx(graph: DependencyGraph) -> nx.DiGraph[str]:
    g: nx.DiGraph[str] = nx.DiGraph()
    for key, node in graph.nodes.items():
        mark = f"{STATE_GLYPH.get(node.state or '', '')} " if node.state else ""
        suffix = f" {node.state}" if node.state else ""
        g.add_node(key, label=f"{mark}{node.label}{suffix}")
    g.add_edges_from(graph.edges)
    return g


def render(graph: DependencyGraph) -> str:
    """Text drawing (networkx's generate_network_text), then any cycles, one per line."""
    lines = list(nx.generate_network_text(to_networkx(graph), with_labels=True,
                                          ascii_only=False))
    for cycle in graph.cycles:
        names = [graph.nodes[k].label for k in cycle]
        lines.append("cycle: " + " -> ".join([*names, names[0]]))
    return "\n".join(lines)
