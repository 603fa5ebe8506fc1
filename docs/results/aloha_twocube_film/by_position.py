"""Two-cube success by where the named cube starts: its x (0 = the middle of the table, where the hand-over
happens; 0.2 = nearest the right arm, which picks it up) in four bins, and how far the failures got.

The layout of seed s is ``oft.sim.aloha.sample_two_cubes(s)`` (red's free-joint pose, then blue's).

python docs/results/aloha_twocube_film/by_position.py \
    docs/results/aloha_twocube_film/paired_start4_cont5_eval_results.json
"""

import collections
import itertools
import json
import sys

from oft.sim.aloha import sample_two_cubes

BINS = (0.0, 0.05, 0.10, 0.15, 0.2001)

for path in sys.argv[1:]:
    with open(path) as f:
        tasks = json.load(f)["tasks"]
    rows = []
    for colour, start in (("red", 0), ("blue", 7)):
        for e in tasks[f"two-cube: transfer the {colour} cube"]["episode_results"]:
            x = sample_two_cubes(e["seed"])[start]
            rows.append((x, e["success"], e["outcome"]["max_stages"][colour]))
    print(path)
    for lo, hi in itertools.pairwise(BINS):
        inside = [r for r in rows if lo <= r[0] < hi]
        ok = sum(r[1] for r in inside)
        print(f"  named cube x in [{lo:.2f}, {min(hi, 0.2):.2f}): {ok}/{len(inside)}")
    stages = collections.Counter(r[2] for r in rows if not r[1])
    print(
        "  failures by the named cube's highest stage (0 untouched, 1 touched, 2 lifted, 3 attempted):",
        dict(sorted(stages.items())),
    )
