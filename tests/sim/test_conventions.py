"""Action conventions are data: a gripper round trip dataset -> policy -> simulator for each suite.

The policy is a stub that replays the dataset's own actions under a real policy spec (trained, or inferred for
a paper checkpoint), so what is checked is the convention path, not learning: the gripper command that reaches
the simulator must be the one the demonstration gave it. LIBERO itself is not installed here: its adapter's
step is reproduced from the same libero-free functions (``oft.conventions``) it calls.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from oft.conventions import (
    CONVENTIONS,
    Conventions,
    action_converter,
    binarize_gripper,
    converter_for,
    get_conventions,
)
from oft.data import open_dataset
from oft.data.dataset import ListDataset
from oft.data.episode import Episode
from oft.data.normalize import NormStats, Stats
from oft.observation import Observation
from oft.sim.base import SimEnv, StepResult
from oft.sim.rollout import rollout
from oft.spec import RobotSpec, get_spec, with_dataset_conventions

OPEN_THEN_CLOSE = [-1.0] * 5 + [1.0] * 5  # LIBERO / robosuite: -1 = open, +1 = close (a grasp)


class ReplayPolicy:
    """Replays ``actions`` (T, D) chunk by chunk under ``spec`` (its conventions are the policy's)."""

    def __init__(self, spec: RobotSpec, actions: np.ndarray) -> None:
        self.spec, self.actions, self.t = spec, np.asarray(actions, np.float32), 0
        self.uses_proprio = True

    def reset(self) -> None:
        self.t = 0

    def predict_action_chunk(self, obs: Observation) -> np.ndarray:
        chunk = self.actions[self.t : self.t + self.spec.chunk_len]
        self.t += len(chunk)
        return chunk


class LiberoStepStandIn(SimEnv):
    """LIBERO's adapter without the simulator: its spec and the action path of ``LiberoEnv.step``
    (``binarize_gripper`` in LIBERO's conventions), recording what robosuite would be sent."""

    task, instruction, max_steps = "libero_spatial/0", "pick up the bowl", 10

    def __init__(self) -> None:
        self.spec = get_spec("libero").replace(conventions=get_conventions("libero"))  # = LiberoEnv.spec
        self.sent: list[np.ndarray] = []

    def _obs(self) -> Observation:
        return Observation([np.zeros((8, 8, 3), np.uint8)] * 2, np.zeros(8, np.float32), self.instruction)

    def reset(self, seed: int) -> Observation:
        self.sent = []
        return self._obs()

    def step(self, action: np.ndarray) -> StepResult:
        self.sent.append(binarize_gripper(action, self.spec.conventions))  # what LiberoEnv.step sends
        return StepResult(self._obs(), False, len(self.sent) >= self.max_steps)


def _libero_hdf5(path, gripper=OPEN_THEN_CLOSE) -> np.ndarray:
    """A one-demo LIBERO file whose gripper opens then closes; returns its raw actions (T, 7)."""
    t = len(gripper)
    rng = np.random.default_rng(0)
    actions = np.concatenate([rng.uniform(-0.5, 0.5, (t, 6)), np.asarray(gripper)[:, None]], 1)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": "pick up the bowl"})
        g = data.create_group("demo_0")
        g["actions"] = actions.astype(np.float32)
        for key in ("agentview_rgb", "eye_in_hand_rgb"):
            g[f"obs/{key}"] = rng.integers(0, 255, (t, 16, 16, 3), dtype=np.uint8)
        g["obs/ee_states"] = rng.normal(size=(t, 6))
        g["obs/gripper_states"] = rng.normal(size=(t, 2))
    return actions.astype(np.float32)


def openvla_rlds_transform(actions: np.ndarray) -> np.ndarray:
    """OpenVLA's LIBERO loader (transforms.py libero_dataset_transform): clip the gripper to [0, 1], flip."""
    out = actions.copy()
    out[:, -1] = 1.0 - np.clip(out[:, -1], 0.0, 1.0)
    return out


def reference_process_action(action: np.ndarray) -> np.ndarray:
    """run_libero_eval.py process_action: normalize_gripper_action(binarize=True), invert_gripper_action."""
    out = action.copy()
    out[..., -1] = np.sign(2 * (out[..., -1] - 0.0) / (1.0 - 0.0) - 1)
    out[..., -1] *= -1.0
    return out


def _stats(actions: np.ndarray, proprio_dim: int) -> NormStats:
    def s(x):
        return Stats(x.mean(0), x.std(0), x.min(0), x.max(0), x.min(0), x.max(0))

    return NormStats(action=s(actions), proprio=s(np.zeros((2, proprio_dim))))


# ------------------------------------------------------------------------------------------------ LIBERO


def test_oft_policy_trained_on_raw_libero_hdf5_opens_and_closes_libero(tmp_path):
    """Train on LIBERO HDF5 (1 step, tiny model): the checkpoint says its actions are LIBERO's own, and its
    gripper reaches the simulator unchanged (the old adapter inverted it: a grasp became a release)."""
    from oft import load_policy
    from oft.train.config import TrainConfig
    from oft.train.loop import train

    raw = _libero_hdf5(tmp_path / "KITCHEN_SCENE1_pick_up_the_bowl_demo.hdf5")
    dataset = open_dataset(tmp_path / "KITCHEN_SCENE1_pick_up_the_bowl_demo.hdf5")
    assert dataset.conventions == CONVENTIONS["libero"]
    cfg = TrainConfig(base="tiny", robot="libero", batch_size=2, max_steps=1, save_every=1, log_every=1,
                      num_threads=1, device="cpu", seed=0)  # fmt: skip
    result = train(cfg, tmp_path / "run", dataset=dataset)
    spec = load_policy(result.checkpoint).spec
    assert spec.conventions == CONVENTIONS["libero"]

    env = LiberoStepStandIn()
    rollout(ReplayPolicy(spec, raw), env, max_steps=10)
    np.testing.assert_array_equal(np.stack(env.sent)[:, 6], OPEN_THEN_CLOSE)
    np.testing.assert_allclose(np.stack(env.sent)[:, :6], raw[:, :6])


def test_paper_checkpoint_on_openvla_rlds_acts_as_the_reference_in_libero(tmp_path):
    """A paper LIBERO checkpoint speaks OpenVLA's RLDS convention (1 = open, 0 = close); converted, LIBERO
    gets exactly run_libero_eval.py's process_action of it — and so the demonstration's own command."""
    from oft.model.loading import infer_spec

    raw = _libero_hdf5(
        tmp_path / "demo.hdf5", gripper=[-1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0, -1.0, -1.0]
    )
    rlds = openvla_rlds_transform(raw)  # what the paper's policy was trained on
    spec = infer_spec("libero_spatial_no_noops", _stats(rlds, 8), proprio_dim=8)
    assert spec.conventions == CONVENTIONS["openvla_libero"]
    spec = RobotSpec.from_dict(json.loads(json.dumps(spec.to_dict())))  # as saved in a checkpoint

    env = LiberoStepStandIn()
    rollout(ReplayPolicy(spec, rlds), env, max_steps=10)
    sent = np.stack(env.sent)
    np.testing.assert_array_equal(sent[:, 6], raw[:, 6])
    np.testing.assert_array_equal(sent, reference_process_action(rlds))


def test_converter_equals_the_reference_process_action_bit_for_bit():
    x = np.linspace(-0.25, 1.25, 61, dtype=np.float32)  # includes 0.5: the reference sends 0 there
    actions = np.concatenate([np.full((61, 6), 0.1, np.float32), x[:, None]], 1)
    conv = action_converter(CONVENTIONS["openvla_libero"], CONVENTIONS["libero"])
    out = binarize_gripper(conv(actions), CONVENTIONS["libero"])
    np.testing.assert_array_equal(out, reference_process_action(actions))
    assert out[30, 6] == 0.0 and x[30] == 0.5


def test_checkpoint_without_conventions_acts_natively():
    """A spec saved before the field existed loads with None: actions go to the simulator as they are."""
    d = get_spec("libero").to_dict()
    del d["conventions"]
    spec = RobotSpec.from_dict(d)
    assert spec.conventions is None
    env = LiberoStepStandIn()
    raw = np.concatenate([np.zeros((10, 6)), np.asarray(OPEN_THEN_CLOSE)[:, None]], 1)
    rollout(ReplayPolicy(spec, raw), env, max_steps=10)
    np.testing.assert_array_equal(np.stack(env.sent)[:, 6], OPEN_THEN_CLOSE)


# --------------------------------------------------------------------------------------------- MetaWorld


def _spy_step(env, inner: str = "_env") -> list[np.ndarray]:
    """Record every action the adapter hands the simulator package."""
    sim = getattr(env, inner)
    sent, step = [], sim.step

    def spy(action):
        sent.append(np.array(action, dtype=np.float32))
        return step(action)

    sim.step = spy
    return sent


def test_metaworld_collect_records_the_simulator_convention(tmp_path):
    pytest.importorskip("metaworld")
    from oft.sim.collect import CollectConfig, collect
    from oft.sim.metaworld import CONVENTIONS as METAWORLD

    out = tmp_path / "ds"
    collect("metaworld", ["reach-v3"], 1, out, CollectConfig(cameras=("corner",), image_size=16, workers=1,
                                                              video=False))  # fmt: skip
    assert open_dataset(out).conventions == METAWORLD == CONVENTIONS["metaworld"]


@pytest.mark.parametrize("dataset_gripper", ["metaworld", "openvla"])
def test_metaworld_gripper_round_trip(tmp_path, dataset_gripper):
    """MetaWorld's effort is -1 = open, +1 = close. A dataset in that convention (LeRobot, as ``oft collect``
    writes it) replays unchanged; one in a 1 = open / 0 = close convention is converted."""
    pytest.importorskip("metaworld")
    from oft.data.lerobot import LeRobotWriter
    from oft.sim.base import make_env

    conv = Conventions("metaworld_01", "delta", dataset_gripper, (3,), "metaworld")
    g = GRIPPER = np.array(OPEN_THEN_CLOSE, np.float32)
    if dataset_gripper == "openvla":
        g = (1.0 - GRIPPER) / 2  # -1 open -> 1, +1 close -> 0
    actions = np.concatenate([np.zeros((10, 3), np.float32), g[:, None]], 1)
    writer = LeRobotWriter(tmp_path / "ds", fps=80, cameras=["corner"], image_shape=(8, 8), action_dim=4,
                           proprio_dim=4, video=False, conventions=conv)  # fmt: skip
    writer.add_episode(
        Episode({"corner": np.zeros((10, 8, 8, 3), np.uint8)}, np.zeros((10, 4)), actions, "x")
    )
    dataset = open_dataset(tmp_path / "ds")
    assert dataset.conventions == conv
    spec = with_dataset_conventions(get_spec("metaworld"), dataset)
    with make_env("metaworld", task="reach-v3", cameras=()) as env:
        sent = _spy_step(env)
        rollout(ReplayPolicy(spec, actions), env, max_steps=10)
    np.testing.assert_array_equal(np.stack(sent)[:, 3], GRIPPER)


# ------------------------------------------------------------------------------------------------- ALOHA


def _aloha_hdf5(path, actions: np.ndarray) -> None:
    t = len(actions)
    with h5py.File(path, "w") as f:
        f["action"] = actions
        f["observations/qpos"] = actions
        f["observations/images/top"] = np.zeros((t, 8, 8, 3), np.uint8)


def test_aloha_gripper_round_trip(tmp_path):
    """ALOHA HDF5 (ACT's layout) -> aloha conventions -> the joint targets and normalized gripper openings
    reach the simulator as recorded; a policy whose gripper is -1 = open / +1 = close is converted."""
    aloha = pytest.importorskip("oft.sim.aloha", exc_type=ImportError)
    from gym_aloha.constants import START_ARM_POSE

    from oft.sim.base import make_env

    opening = np.array([1.0] * 5 + [0.0] * 5, np.float32)[:, None]  # open, then closed
    arm = np.tile(np.asarray(START_ARM_POSE[:6], np.float32), (10, 1))  # hold the start pose
    actions = np.concatenate([arm, opening, arm, opening], 1)  # (10, 14)
    _aloha_hdf5(tmp_path / "episode_0.hdf5", actions)
    dataset = open_dataset(tmp_path)
    assert dataset.conventions == CONVENTIONS["aloha"] == aloha.CONVENTIONS
    spec = with_dataset_conventions(get_spec("aloha"), dataset)
    robosuite_style = spec.replace(
        conventions=Conventions("signed", "absolute", "robosuite", (6, 13), "aloha")
    )
    signed = actions.copy()
    signed[:, [6, 13]] = 1.0 - 2.0 * actions[:, [6, 13]]  # 1 open -> -1, 0 closed -> +1
    with make_env("aloha", task="transfer-cube", cameras=()) as env:
        for policy_spec, replayed in ((spec, actions), (robosuite_style, signed)):
            sent = _spy_step(env)
            rollout(ReplayPolicy(policy_spec, replayed), env, max_steps=10, seed=0)
            np.testing.assert_allclose(np.stack(sent), actions, atol=1e-6)


# ---------------------------------------------------------------------------------- refusals and training


def test_no_conversion_between_delta_and_absolute_or_other_proprio():
    env = LiberoStepStandIn()
    absolute = CONVENTIONS["aloha"].replace(gripper_dims=(6,))
    with pytest.raises(ValueError, match=r"absolute arm actions, the simulator expects delta"):
        rollout(ReplayPolicy(get_spec("libero").replace(conventions=absolute), np.zeros((1, 7))), env)
    other_proprio = CONVENTIONS["libero"].replace(proprio="metaworld")
    with pytest.raises(ValueError, match="proprio laid out as 'metaworld'"):
        rollout(ReplayPolicy(get_spec("libero").replace(conventions=other_proprio), np.zeros((1, 7))), env)
    no_proprio = get_spec("libero").replace(conventions=other_proprio, proprio_dim=0)
    assert converter_for(ReplayPolicy(no_proprio, np.zeros((1, 7))), env).identity  # proprio unused: fine
    assert converter_for(object(), env).identity  # a policy without a spec (the expert) acts natively


def test_datasets_of_one_run_must_agree(tmp_path):
    from oft.data.hdf5 import RobomimicDataset
    from oft.train._concat import ConcatDataset

    _libero_hdf5(tmp_path / "a.hdf5")
    _libero_hdf5(tmp_path / "b.hdf5")
    a = open_dataset(tmp_path / "a.hdf5")
    b = RobomimicDataset([tmp_path / "b.hdf5"], conventions="openvla_libero")
    with pytest.raises(ValueError, match=r"disagree on action conventions: .*a\.hdf5.*b\.hdf5"):
        ConcatDataset([a, b])
    assert ConcatDataset([a, open_dataset(tmp_path / "b.hdf5")]).conventions == CONVENTIONS["libero"]
    unknown = ListDataset([Episode({}, np.zeros((2, 0)), np.zeros((2, 7)), "x")])
    assert with_dataset_conventions(get_spec("libero"), unknown).conventions == CONVENTIONS["libero"]


def test_lerobot_dataset_keeps_one_convention(tmp_path):
    """Stored in info.json's action feature; appending episodes in another convention is refused, and a
    dataset written before conventions existed is stamped by the next writer."""
    from oft.data.lerobot import INFO_PATH, LeRobotWriter

    def writer(conventions):
        return LeRobotWriter(tmp_path / "ds", fps=10, cameras=[], image_shape=(8, 8), action_dim=4,
                             proprio_dim=0, video=False, conventions=conventions)  # fmt: skip

    ep = Episode({}, np.zeros((3, 0)), np.zeros((3, 4)), "x")
    writer(None).add_episode(ep)
    assert open_dataset(tmp_path / "ds").conventions is None
    writer("metaworld").add_episode(ep)
    info = json.loads((tmp_path / "ds" / INFO_PATH).read_text())
    assert info["features"]["action"]["oft_conventions"]["name"] == "metaworld"
    assert open_dataset(tmp_path / "ds").conventions == CONVENTIONS["metaworld"]
    with pytest.raises(ValueError, match="existing episodes have action conventions"):
        writer(Conventions("other", "absolute", None))


def test_plain_openvla_checkpoint_speaks_openvla_conventions(tmp_path):
    """A (non-OFT) OpenVLA LIBERO fine-tune reloads in OpenVLA's gripper convention (was: none = inverted)."""
    import torch

    from oft import load_policy
    from oft.model import build_policy
    from oft.train.export import export_reference

    spec = RobotSpec("toy", action_dim=7, proprio_dim=0, chunk_len=1, cameras=("image_primary",))
    ones = np.ones(7)
    stats = NormStats(Stats(0 * ones, ones, -ones, ones, -ones, ones), None)
    torch.manual_seed(0)
    policy = build_policy(spec, stats, ["pick it up"], arch="tiny", head="discrete", use_proprio=False)
    export_reference(policy, tmp_path / "ovla", unnorm_key="libero_spatial_no_noops")
    for extra in ("oft_export.json", "oft_checksums.json"):  # as a real OpenVLA directory: neither file
        (tmp_path / "ovla" / extra).unlink(missing_ok=True)
    for f in ("action_head", "proprio_projector"):
        assert not list((tmp_path / "ovla").glob(f"{f}--*"))
    loaded = load_policy(tmp_path / "ovla")
    assert loaded.spec.conventions == CONVENTIONS["openvla_libero"]


def test_a_serving_client_is_converted_with_the_servers_spec():
    """Evaluating through ``oft serve`` + a client converts like the policy itself (metadata has the spec)."""
    policy_spec = get_spec("libero").replace(conventions=CONVENTIONS["openvla_libero"])

    class Client:  # what WebsocketClientPolicy exposes: no .spec, only the server's metadata
        def get_server_metadata(self) -> dict:
            return {"spec": policy_spec.to_dict()}

    class Env:
        spec = get_spec("libero")

    conv = converter_for(Client(), Env())
    assert not conv.identity
    np.testing.assert_allclose(conv(np.array([[0, 0, 0, 0, 0, 0, 1.0]]))[0, 6], -1.0)  # open -> open
