"""A parameter added to a released plugin (marked ``added_in``) leaves the identity of trials that keep its
default, so stored rows and reference results still match after the upgrade (Params.identity)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from suite.contracts import Params


class Before(Params):
    window: int = Field(100, gt=0)
    mode: Literal["a", "b"] = "a"


class After(Params):
    window: int = Field(100, gt=0)
    mode: Literal["a", "b"] = "a"
    lr_scale: float = Field(1.0, json_schema_extra={"added_in": "0.4.0"})
    layout: tuple[int, int] = Field((1, 2), json_schema_extra={"added_in": "0.4.0"})


def test_added_field_at_its_default_leaves_the_identity():
    before = Before(window=50).model_dump(mode="json")
    after = After(window=50).model_dump(mode="json")
    assert after != before  # the dump grew ...
    assert After.identity(after) == Before.identity(before) == before  # ... the identity did not


def test_added_field_set_away_from_its_default_is_part_of_the_identity():
    dumped = After(window=50, lr_scale=0.5, layout=(1, 3)).model_dump(mode="json")
    assert After.identity(dumped) == {"window": 50, "mode": "a", "lr_scale": 0.5, "layout": [1, 3]}


def test_fields_without_the_mark_always_count():
    dumped = After().model_dump(mode="json")
    assert After.identity(dumped) == {"window": 100, "mode": "a"}  # defaults of unmarked fields stay


# --- through the trial matrix: a plugin upgraded with an added parameter -------------------------------
PLUGIN = '''
from pydantic import Field
from suite.contracts import Method, Params
from suite.training import StatelessWindows, burn_in_loss, update


class GrowParams(Params):
    window: int = Field(20, gt=1)
{extra}

class Grow(Method):
    name = "grow"
    Params = GrowParams
    search_space = {{"window": {{"choice": [10, 20]}}}}

    def train(self, model, data, ctx):
        opt = ctx.make_optimizer()
        for _ in ctx.epoch_range():
            for part in StatelessWindows(data.train, self.params.window, self.params.window).iterate(4, True):
                if update(ctx, opt, burn_in_loss(model, data, part, 0, True)[0], samples=part.batch):
                    return
'''

MANIFEST = """name: upgrade
tasks: [{{name: toy-sysid, params: {{length: 60}}}}]
models: [{{name: gru, params: {{hidden_size: 4}}}}]
methods: [{{name: grow, params: {params}}}]
seeds: [0, 1]
budget: {{steps: 2}}
"""


def _keys(tmp_path, version: str, extra: str, params: str = "{window: 10}") -> list[tuple[str, str]]:
    from suite.manifest import load_manifest
    from suite.registry import load_registry
    from suite.run.sweep import expand

    folder = tmp_path / version
    folder.mkdir()
    (folder / "grow.py").write_text(PLUGIN.format(extra=extra))
    path = tmp_path / f"{version}.yaml"
    path.write_text(MANIFEST.format(params=params))
    registry = load_registry([folder])
    manifest = load_manifest(path, lambda dirs: registry)
    return [(t.config_id, t.key) for t in expand(manifest, registry).trials]


def test_upgrading_a_plugin_with_an_added_parameter_keeps_stored_keys(tmp_path):
    before = _keys(tmp_path, "v1", "")
    added = '    decay: float = Field(1.0, json_schema_extra={"added_in": "0.4.0"})'
    assert _keys(tmp_path, "v2", added) == before  # rows written by v1 still match (resume, reference scoring)
    assert _keys(tmp_path, "v3", added, "{window: 10, decay: 0.5}") != before  # a new setting is a new trial
    # the same field without the mark renames every trial: what the mark is for
    assert _keys(tmp_path, "v4", "    decay: float = 1.0") != before
