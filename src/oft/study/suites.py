"""The study's task suites: a registry of named task sets, each evaluated on layouts no demonstration used.

* ``mt10`` — MetaWorld's MT10 (Yu et al. 2019, "Meta-World"): ten manipulation tasks, one language-
  conditioned policy for all of them.
* ``language`` — ``faucet-open-v3`` and ``faucet-close-v3``: the same faucet at the start, the handle turned
  one way or the other. Goal markers are hidden (``show_goal=False``: the open task's green and the close
  task's blue goal dot would otherwise tell them apart), so only the instruction says which way. Evaluation
  runs every start state under every instruction and reports whether the policy did what it was told
  (:mod:`oft.study.language`), plus a control with the instruction withheld.
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
    """

    name: str
    env: str
    tasks: str
    description: str
    env_kwargs: tuple[tuple[str, object], ...] = ()
    instruction_swap: bool = False

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
            env_kwargs=(("show_goal", False),),
            instruction_swap=True,
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
