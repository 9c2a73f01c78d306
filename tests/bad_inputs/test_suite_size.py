"""The bad-input corpus covers every subcommand with at least 150 cases."""

from tests.bad_inputs import (
    test_misc,
    test_models,
    test_outputs,
    test_run,
    test_sampling,
    test_vote_train,
)

MODULES = (test_misc, test_models, test_outputs, test_run, test_sampling, test_vote_train)


def test_the_corpus_holds_150_cases_over_every_command():
    cases = [case for m in MODULES for case in m.CASES.values()]
    assert len(cases) >= 150, len(cases)
    commands = {case.argv[0] for case in cases if case.argv}
    assert commands >= {"inspect", "generate", "generate-method", "vote", "train", "run",
                        "plan", "convert", "toy", "demo", "fetch-models", "sweep",
                        "report"}, commands
