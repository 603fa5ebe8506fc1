"""`oft eval-curve` keeps what `oft eval` reports beside success: reward stages and instruction-following."""

from __future__ import annotations

from pathlib import Path

from oft.sim.evaluate import _summarize
from oft.study.curve import _point, format_curve

STAGES = ["touched both", "grasped both", "peg touches socket", "inserted"]


def _episode(seed: int, max_stage: int, followed: bool | None = None) -> dict:
    outcome = {"max_stage": max_stage, "stages": STAGES}
    if followed is not None:
        outcome["followed"] = followed
    return {"seed": seed, "success": max_stage == 4, "steps": 400, "outcome": outcome}


def _results(records: dict) -> dict:
    tasks, overall = _summarize(records)
    return {"tasks": tasks, "overall": overall}


def test_a_curve_keeps_the_stages_episodes_reached():
    """Insertion sat at 0 successes for most of a run: the curve said nothing of the grasps learned meanwhile,
    though every point's `oft eval` had counted them."""
    early = _results({"insertion": [_episode(0, 0), _episode(1, 1), _episode(2, 0)]})
    late = _results({"insertion": [_episode(0, 2), _episode(1, 4), _episode(2, 3)]})
    points = [_point(2000, 9.4, early, Path("a")), _point(12000, 56.6, late, Path("b"))]
    assert points[1]["per_task"]["insertion"]["stages"] == {
        "touched both": 3, "grasped both": 3, "peg touches socket": 2, "inserted": 1,
    }  # fmt: skip
    md = format_curve({"run": "r", "env": "aloha", "episodes": 3, "seed": 0, "tasks": ["insertion"],
                       "points": points})  # fmt: skip
    table = md.split("Episodes that reached each reward stage:")[1]
    assert "| minutes | step | touched both | grasped both | peg touches socket | inserted |" in table
    assert "| 9.4 | 2000 | 1/3 | 0/3 | 0/3 | 0/3 |" in table
    assert "| 56.6 | 12000 | 3/3 | 3/3 | 2/3 | 1/3 |" in table
    assert "followed" not in md


def test_a_curve_keeps_instruction_following_and_says_where_a_task_lacks_stages():
    said = _results({
        "two-cube: transfer the red cube": [_episode(0, 4, True), _episode(1, 1, False)],
        "two-cube: transfer the blue cube": [_episode(0, 0, False), _episode(1, 4, True)],
    })  # fmt: skip
    point = _point(6, 1.0, said, Path("a"))
    assert point["per_task"]["two-cube: transfer the red cube"]["followed"] == 1
    md = format_curve({"run": "r", "env": "aloha", "episodes": 2, "seed": 0, "tasks": sorted(said["tasks"]),
                       "points": [point]})  # fmt: skip
    assert "| 1.0 | 6 | 1/2 | 1/2 |" in md.split("Episodes that followed their instruction:")[1]

    row = {"successes": 0, "episodes": 1, "success_rate": 0.0, "ci95": [0.0, 0.8]}
    older = {"tasks": {"insertion": row}, "overall": row}  # a results.json from before stages were counted
    newer = _results({"insertion": [_episode(0, 1)]})
    points = [_point(2, 0.5, older, Path("p")), _point(4, 1.0, newer, Path("q"))]
    md = format_curve({"run": "r", "env": "aloha", "episodes": 1, "seed": 0, "tasks": ["insertion"],
                       "points": points})  # fmt: skip
    assert "| 0.5 | 2 | – | – | – | – |" in md and "| 1.0 | 4 | 1/1 | 0/1 | 0/1 | 0/1 |" in md
