"""--plugins folders reach every node of a cluster with the sweep: on a real 2-node Ray cluster, with the
folder removed from the driver's disk right after it was packed, every trial (on both nodes) imports the
shipped copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from suite.manifest import load_manifest
from suite.registry import load_registry
from suite.run import plugin_shipping
from suite.run.orchestrate import run_sweep
from suite.run.sweep import expand
from suite.store.results import ResultsStore

PLUGIN = '''
from suite.contracts import Method, Params
from suite.training import StatelessWindows, burn_in_loss, update


class Shipped(Method):
    name = "shipped-tbptt"
    Params = Params
    search_space = {}

    def train(self, model, data, ctx):
        ctx.log(shipped=float("rnnbench-plugins" in __file__))  # which copy of this file runs
        plan = StatelessWindows(data.train, 16, stride=16)
        opt = ctx.make_optimizer()
        for _ in ctx.epoch_range():
            for part in plan.iterate(8, shuffle=True):
                loss, _ = burn_in_loss(model, data, part, 0, grad=True)
                if update(ctx, opt, loss, samples=part.batch * part.length):
                    return
'''

MANIFEST = """
name: shipped
tasks: [{name: toy-sysid, params: {length: 120}}]
models: [{name: gru, params: {hidden_size: 4}}]
methods: [{name: shipped-tbptt}]
seeds: [0, 1, 2, 3]
budget: {steps: 3}
eval_every: {steps: 3}
resources: {cpu: 1}
"""


def test_pack_and_unpack_round_trip(tmp_path):
    folder = tmp_path / "my plugins"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.py").write_text("x = 1\n")
    (folder / "sub" / "table.csv").write_text("1,2\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "a.pyc").write_bytes(b"\0")
    (packed,) = plugin_shipping.pack([str(folder)])
    assert set(packed.files) == {"a.py", "sub/table.csv"}
    (path,) = plugin_shipping.unpack([packed])
    assert Path(path).name == "my plugins" and (Path(path) / "sub" / "table.csv").read_text() == "1,2\n"
    assert plugin_shipping.unpack([packed]) == [path]  # once per digest
    (folder / "a.py").write_text("x = 2\n")
    assert plugin_shipping.pack([str(folder)])[0].digest != packed.digest


@pytest.mark.ray
def test_plugins_reach_both_nodes_without_the_drivers_folder(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "shipped_method.py").write_text(PLUGIN)
    manifest_path = tmp_path / "m.yaml"
    manifest_path.write_text(MANIFEST)
    registry = load_registry([str(folder)])
    manifest = load_manifest(manifest_path, lambda extra: registry)
    trials = expand(manifest, registry).trials
    original = plugin_shipping.pack

    def pack_then_remove(dirs):
        packs = original(dirs)
        shutil.rmtree(folder)  # the driver's copy is gone before any trial starts
        return packs

    monkeypatch.setattr(plugin_shipping, "pack", pack_then_remove)
    ray.shutdown()  # a Ray instance left by another test in this worker would be joined instead of the cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        results = tmp_path / "results"
        run_sweep(manifest, trials, results_dir=results, address=cluster.address, wandb_mode="disabled",
                  plugin_dirs=[str(folder)])
        node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert not folder.exists()
    store = ResultsStore(results)
    rows = store.trials("shipped")
    assert len(rows) == 4 and set(rows["status"]) == {"ok"}, rows[["status", "error"]]
    assert set(rows["node_id"]) == node_ids and len(node_ids) == 2  # both nodes ran trials
    shipped = store.curves("shipped").query("split == 'diag' and metric == 'shipped'")
    assert len(shipped) == 4 and set(shipped["value"]) == {1.0}  # every trial ran the shipped copy
