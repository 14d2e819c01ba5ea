"""A program pickled before its modules were merged (MLflow's DSPy flavor pickles a logged program, naming each class by
its module) still loads in a fresh process: the former modules' names stand for the modules their classes are in now."""

from __future__ import annotations

import subprocess
import sys

# each former module, with the classes a pickled program named it for
FORMER = {
    "refed_dspy.programs.reference_feedback": ["CollectReferenceFeedback"],
    "refed_dspy.programs.synthesize": ["InstructionSynthesizer"],
    "refed_dspy.programs.respond_and_improve": ["RespondAndImprove"],
    "refed_dspy.programs.propose_instructions": ["ProposeInstructions"],
    "refed_dspy.programs.reference_synthesis": ["ReferenceSynthesis"],
    "refed_dspy.programs.reflect_pair": ["ReflectPair"],
    "refed_dspy.programs.reflection_tuning": ["ReflectionTuning"],
    "refed_dspy.signatures.describe_instruction": ["DescribeInstruction"],
    "refed_dspy.signatures.synthesize_instructions": ["SynthesizeInstructions"],
    "refed_dspy.signatures.generate_response": ["GenerateResponse"],
    "refed_dspy.signatures.critique_response": ["CritiqueResponse"],
    "refed_dspy.signatures.improve_response": ["ImproveResponse"],
    "refed_dspy.signatures.reflect_instruction": ["ReflectInstruction"],
    "refed_dspy.signatures.reflect_response": ["ReflectResponse"],
    "refed_dspy.signatures.rate_instruction": ["RateInstruction"],
}

CHECK = """
import pickle, sys
import refed_dspy.programs as programs, refed_dspy.signatures as signatures
for module, names in {former!r}.items():
    for name in names:
        found = pickle.loads(b"c" + module.encode() + b"\\n" + name.encode() + b"\\n.")
        assert found is getattr(programs, name, None) or found is getattr(signatures, name, None), (module, name)
print("loaded", sum(map(len, {former!r}.values())))
"""


def test_every_former_module_still_names_its_classes_in_a_fresh_process():
    # pickle.loads first, in a process that has imported nothing of refed: as mlflow.pyfunc.load_model does
    first = "import pickle; c = pickle.loads(b'crefed_dspy.programs.respond_and_improve\\nRespondAndImprove\\n.')"
    out = subprocess.run([sys.executable, "-c", first + "; print(c.__name__)"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "RespondAndImprove", out.stderr
    out = subprocess.run([sys.executable, "-c", CHECK.format(former=FORMER)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"loaded {sum(map(len, FORMER.values()))}", out.stderr


def test_the_tables_name_no_module_that_still_exists_and_every_one_that_went():
    """The check can fail: a former name that is a module again, or a removed module left out, is caught."""
    import refed_dspy.programs as programs
    import refed_dspy.signatures as signatures

    listed = {f"{pkg.__name__}.{name}" for pkg in (programs, signatures) for name in pkg.FORMER_MODULES}
    assert set(FORMER) <= listed
    assert "refed_dspy.programs.steps" in listed  # a module of helpers, no class pickled by it
    for name in listed:
        assert sys.modules[name].__name__ != name  # it stands for another module; none of these files is left


def test_a_run_made_with_one_of_our_programs_before_the_merge_is_continued_by_it():
    """A run dir's fingerprint names a program passed from Python by its class's module: one recorded before the merge
    is the same program now, and another program still differs."""
    from refed_dspy.config import Config, fingerprint
    from refed_dspy.synthesis.program import run_fingerprint_diff

    now = Config().model_copy(deep=True)
    now.synthesis.program = "python:refed_dspy.programs.synthesis.RespondAndImprove"
    new = fingerprint(now, "sha256:0123456789ab")
    old = {**new, "synthesis": {**new["synthesis"], "program": "python:refed_dspy.programs.respond_and_improve."}}
    old["synthesis"]["program"] += "RespondAndImprove"
    assert run_fingerprint_diff(old, new) == []
    other = {**old, "synthesis": {**old["synthesis"], "program": "python:my_lab.programs.RespondAndImprove"}}
    assert run_fingerprint_diff(other, new) == [
        "synthesis.program: 'python:my_lab.programs.RespondAndImprove' -> "
        "'python:refed_dspy.programs.synthesis.RespondAndImprove'"
    ]
    changed = {**old, "program_hash": "sha256:ba9876543210"}
    assert run_fingerprint_diff(changed, new) == ["program content: sha256:ba9876543210 -> sha256:0123456789ab"]
