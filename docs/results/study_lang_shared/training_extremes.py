"""Does the language policy solve its own training start states at the ends of the faucet range?

python docs/results/study_lang_shared/training_extremes.py
(needs runs/lang_shared_seed0 from study-language.md, section "Both instructions from the same start states")
"""

import oft
from oft.sim.base import make_env
from oft.sim.rollout import rollout

RUN = "runs/lang_shared_seed0/variants/pdac_l1_film/train"
SCENE = {"shared_layouts": True, "show_goal": False}  # the suite's scene options

policy = oft.load_policy(RUN)
# the study demonstrated seeds 0..49 of each task; with shared layouts both tasks start alike at equal seeds
x = {}
with make_env("metaworld", task="faucet-close-v3", cameras=(), **SCENE) as env:
    for seed in range(50):
        env.reset(seed)
        x[seed] = float(env._env.obj_init_pos[0])
far_right = [s for s, v in x.items() if v > 0.06]
far_left = [s for s, v in x.items() if v < -0.06]
print("training start states beyond +6 cm:", [(s, round(x[s], 3)) for s in far_right])
print("training start states beyond -6 cm:", [(s, round(x[s], 3)) for s in far_left])
for told, seeds in (("faucet-close-v3", far_right), ("faucet-open-v3", far_left)):
    ok = []
    for seed in seeds:
        with make_env("metaworld", task=told, cameras=("corner",), image_size=64, **SCENE) as env:
            ok.append(bool(rollout(policy, env, seed=seed, max_steps=300).success))
    print(f"told {told} on its training start states: {sum(ok)}/{len(ok)}")
