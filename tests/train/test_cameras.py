"""The cameras a policy sees are chosen among those its dataset records, not only the robot spec's default.

A MetaWorld dataset collected with ``--cameras topview,gripperPOV`` used to be refused by ``--set
cameras=topview,gripperPOV`` ("names among robot 'metaworld''s cameras ('corner', 'gripperPOV')"), although
the simulator renders topview for evaluation as well as for collection.
"""

from __future__ import annotations

import numpy as np
import pytest

import oft
from oft.cli import main
from oft.data.episode import Episode
from oft.spec import get_spec
from oft.train.presets import check_dataset_robot, get_preset

CAMERAS = ("topview", "gripperPOV")


@pytest.fixture(scope="module")
def topview_dataset(tmp_path_factory):
    from oft.data.lerobot import LeRobotWriter

    root = tmp_path_factory.mktemp("data") / "topview"
    writer = LeRobotWriter(root, fps=10, cameras=CAMERAS, image_shape=(32, 32), action_dim=4, proprio_dim=4,
                           video=False)  # fmt: skip
    rng = np.random.default_rng(0)
    for i in range(3):
        images = {c: rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8) for c in CAMERAS}
        actions = rng.uniform(-1, 1, (12, 4)).astype(np.float32)
        proprio = rng.normal(size=(12, 4)).astype(np.float32)
        writer.add_episode(Episode(images, proprio, actions, f"reach {i}"))
    writer.finalize()
    return root


def test_a_camera_the_dataset_records_trains_and_is_what_the_policy_takes(topview_dataset, tmp_path):
    out = tmp_path / "run"
    rc = main(
        ["train", "--preset", "metaworld-tiny", "--dataset", str(topview_dataset), "--out", str(out),
         "--steps", "2", "--base", "tiny", "--set", "batch_size=2", "--set", "num_threads=1",
         "--set", "cameras=topview,gripperPOV"]
    )  # fmt: skip
    assert rc == 0
    policy = oft.load_policy(out)
    assert policy.spec.cameras == CAMERAS and set(policy.render_sizes) == set(CAMERAS)
    # evaluation renders the cameras the policy was trained on, at the size it was trained on
    from oft.sim.evaluate import evaluate

    res = evaluate(policy, "metaworld", ["reach-v3"], episodes=1, max_steps=2)
    assert res["overall"]["episodes"] == 1


def test_a_camera_the_dataset_lacks_stops_the_run_naming_the_fix(topview_dataset, tmp_path, capsys):
    from oft.data import open_dataset

    ds = open_dataset(topview_dataset)
    cfg = get_preset("metaworld-tiny")  # the spec's default cameras: corner + gripperPOV
    with pytest.raises(ValueError, match=r"records cameras \['topview', 'gripperPOV'\].*\['corner'\].*"
                                         r"--set cameras=gripperPOV"):  # fmt: skip
        check_dataset_robot(cfg, get_spec("metaworld"), ds)
    asked = cfg.replace(cameras=("corner3", "topview"))
    spec = get_spec("metaworld").replace(cameras=asked.cameras)
    with pytest.raises(ValueError, match=r"TrainConfig\.cameras.*\['corner3'\].*--set cameras=topview"):
        check_dataset_robot(asked, spec, ds)
    # from the command line: refused before any step, nothing written but the run's directory
    out = tmp_path / "never"
    rc = main(["train", "--dataset", str(topview_dataset), "--out", str(out), "--base", "tiny",
               "--set", "cameras=corner"])  # fmt: skip
    assert rc == 2 and "--set cameras=" in capsys.readouterr().err
    assert not any(out.glob("checkpoints/*"))
