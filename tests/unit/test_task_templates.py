"""Every registered task has a starting template, and each one is a valid protocol of that task."""

from __future__ import annotations

import pytest
import yaml

from tuneproof.protocol.loader import parse_protocol
from tuneproof.protocol.starter import task_template
from tuneproof.tasks.registry import TASKS


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_template_parses_as_that_task_with_its_own_baselines_and_gates(task: str) -> None:
    raw = task_template(task, "data/mine.jsonl")
    protocol = parse_protocol(yaml.safe_dump(raw), f"{task}-template")
    assert protocol.task == task
    assert [str(f) for f in protocol.data.files or []] == ["data/mine.jsonl"]
    assert protocol.gates, "a template says whether fine-tuning helped"
    named = {g.beats for g in protocol.gates if g.beats}
    assert named <= set(protocol.evaluate.baselines), "every gate's baseline is scored"


def test_unknown_task_has_no_template() -> None:
    from tuneproof.errors import ProtocolError

    with pytest.raises(ProtocolError, match="no template"):
        task_template("translation")
