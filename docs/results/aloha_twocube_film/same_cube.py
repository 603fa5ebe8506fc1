"""Per start state: which cube the policy moved furthest under each two-cube instruction (from the outcome
oft eval records), and how often it moved the same cube whatever it was told.

python docs/results/aloha_twocube_film/same_cube.py docs/results/aloha_twocube_film/film_results.json
"""

import collections
import json
import sys

for path in sys.argv[1:]:
    with open(path) as f:
        rows = json.load(f)["tasks"]
    red, blue = (rows[f"two-cube: transfer the {c} cube"]["episode_results"] for c in ("red", "blue"))
    for name, eps in (("told red", red), ("told blue", blue)):
        print(path, name, dict(collections.Counter(str(e["outcome"]["moved"]) for e in eps)))
    both = [(a["outcome"]["moved"], b["outcome"]["moved"]) for a, b in zip(red, blue, strict=True)]
    both = [(a, b) for a, b in both if a and b]
    same = sum(a == b for a, b in both)
    told = sum(a == "red" and b == "blue" for a, b in both)
    print(
        f"  start states with a cube moved under both: {len(both)}; the same cube: {same}; "
        f"each as told: {told}"
    )
