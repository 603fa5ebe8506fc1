"""The study's task suites: a registry of named task sets, each evaluated on layouts no demonstration used.

* ``mt10`` — MetaWorld's MT10 (Yu et al. 2019, "Meta-World"): ten manipulation tasks, one language-
  conditioned policy for all of them. Reach, push and pick-place share one scene (a puck and a goal dot), so
  among those three the instruction is what tells the task (:data:`oft.sim.metaworld.MT10`).
* ``language`` — ``faucet-open-v3`` and ``faucet-close-v3``: the same faucet at the start, the handle turned
  one way or the other. Goal markers are hidden (``show_goal=False``: the open task's green and the close
  task's blue goal dot would otherwise tell them apart) and both tasks draw their layouts from one pool
  (``shared_layouts``: MetaWorld places the faucet within +-5 cm for open, +-10 cm for close, so the
  position alone would say "close" for half of the close layouts, and no opening demonstration would start
  there), so only the instruction says which way. Evaluation
  runs every start state under every instruction and reports whether the policy did what it was told
  (:mod:`oft.study.language`), plus a control with the instruction withheld. Trained by default with the
  ``metaworld-language`` preset on 100 demonstrations per task, comparing ``pdac_l1`` with ``pdac_l1_film``.
* ``aloha`` — OFT+ on the bimanual ALOHA simulator (:mod:`oft.sim.aloha`): ACT's transfer-cube and insertion
  (scripted-data bars ~90% / ~50%, Zhao et al. 2023) and our ``two-cube``, where the instruction names the
  cube to hand over. Trained with the ``aloha`` preset (3 cameras, 14-D proprio, K = 25, FiLM); the variants
  compare OFT+ with and without FiLM (the paper's FiLM measurement, Sec. VI) and with one action slot per
  chunk step (``oft_plus_per_step``: 25 slots instead of 350). Every two-cube start state is
  evaluated under both instructions ("transfer the red cube" / "... blue cube"), each judged by the cube it
  names: the rate is instruction following.
"""

from __future__ import annotations

from dataclasses import dataclass

from oft.spec import unknown_name_message


@dataclass(frozen=True)
class Suite:
    """A named task set.

    tasks: what ``oft.sim.evaluate.resolve_tasks(env, tasks)`` accepts (``"mt10"``, ``"a,b"``); resolved
        lazily so the registry imports without the simulator installed.
    env_kwargs: adapter options used for the demonstrations *and* the evaluation (pairs, to stay hashable).
    instruction_swap: evaluate each task's start states under each task's instruction (the language suite).
    instructions: ``(task, (instruction, ...))`` pairs: that task's start states are evaluated once under
        each instruction (the env's ``instruction=``), reported as ``"<task>: <instruction>"`` rows.
    preset / variants / demos: what ``oft study --suite NAME`` trains on when ``--preset`` / ``--variants``
        / ``--demos`` are not given (None: the study's defaults).
    """

    name: str
    env: str
    tasks: str
    description: str
    env_kwargs: tuple[tuple[str, object], ...] = ()
    instruction_swap: bool = False
    instructions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    preset: str | None = None
    variants: tuple[str, ...] | None = None
    demos: int | None = None

    def task_names(self) -> list[str]:
        from oft.sim.evaluate import resolve_tasks

        return resolve_tasks(self.env, self.tasks)

    @property
    def env_options(self) -> dict:
        return dict(self.env_kwargs)


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("mt10", "metaworld", "mt10", "MetaWorld MT10: ten tasks, one language-conditioned policy"),
        Suite(
            "language",
            "metaworld",
            "faucet-open-v3,faucet-close-v3",
            "faucet open vs close from the same-looking start: only the instruction tells them apart",
            env_kwargs=(("show_goal", False), ("shared_layouts", True)),
            instruction_swap=True,
            # the measured recipe (docs/results/study-language.md): FiLM on the centered prompt, 100 start
            # states per task, 8,000 steps; the variants the suite exists to compare: with and without FiLM
            preset="metaworld-language",
            variants=("pdac_l1", "pdac_l1_film"),
            demos=100,
        ),
        Suite(
            "aloha",
            "aloha",
            "transfer-cube,insertion,two-cube",
            "bimanual ALOHA: ACT's two scripted tasks and two-cube (the instruction names the cube)",
            instructions=(("two-cube", ("transfer the red cube", "transfer the blue cube")),),
            preset="aloha",
            variants=("oft_plus", "oft_plus_no_film", "oft_plus_per_step"),
        ),
    )
}


def get_suite(name: str) -> Suite:
    """The registered suite ``name``; KeyError with a "did you mean" hint otherwise."""
    try:
        return SUITES[name]
    except KeyError:
        raise KeyError(unknown_name_message("study suite", name, SUITES)) from None


__all__ = ["SUITES", "Suite", "get_suite"]
