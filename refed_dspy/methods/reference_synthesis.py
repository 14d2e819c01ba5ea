"""The family of the paper's methods: new instructions from a reference's features, a response to each, and
optionally an improvement of it with feedback. Each method of the family is this class with its switches set: the
paper's method and its baselines are one table of switches (FAMILY), registered on import."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import dspy

from refed_dspy.methods.base import Defaults, Method, SynthesisSettings, dumped
from refed_dspy.programs import ReferenceSynthesis
from refed_dspy.programs.parts import PART_INPUTS
from refed_dspy.registry import METHODS
from refed_dspy.store.records import Reference, ReferenceFeedback

DESCRIBED_FEATURES = ("subject_areas", "relevant_skills")


class ReferenceSynthesisMethod(Method):
    """A method run by the ReferenceSynthesis pipeline (collect, synthesizer, respond).

    Switches (class attributes):
        describe: the reference's described subject areas and skills drive synthesis (else the reference instruction
            alone, as the one feature "reference").
        critique_reference: the reference's response is critiqued once, and the improver applies that feedback.
        improve: each draft response is improved.
        sample_feedback: each new pair is critiqued itself and improved with that critique (sample-level feedback).
    """

    describe: ClassVar[bool] = True
    critique_reference: ClassVar[bool] = True
    improve: ClassVar[bool] = True
    sample_feedback: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # switches whose feedback no step would use: the run would pay for it and throw it away
        if cls.critique_reference and cls.sample_feedback:
            raise TypeError(
                f"{cls.__name__}: sample_feedback replaces the reference's critique in the improver; set "
                "critique_reference or sample_feedback, not both"
            )
        if (cls.critique_reference or cls.sample_feedback) and not cls.improve:
            raise TypeError(
                f"{cls.__name__}: only the improver applies feedback; critique_reference and "
                "sample_feedback need improve = True"
            )
        cls.features = DESCRIBED_FEATURES if cls.describe else ("reference",)
        cls.collects_feedback = cls.describe or cls.critique_reference
        parts = {"synthesizer": PART_INPUTS["synthesizer"], "respond": PART_INPUTS["respond"]}
        cls.parts = {"collect": PART_INPUTS["collect"], **parts} if cls.collects_feedback else parts

    def build_pipeline(self, syn: SynthesisSettings | None = None, respond: dspy.Module | None = None) -> dspy.Module:
        syn = syn or Defaults()
        return ReferenceSynthesis(
            syn.instructions_per_feature,
            respond=respond,
            describe=self.describe,
            critique=self.critique_reference,
            improve=self.improve,
            sample_feedback=self.sample_feedback,
        )

    def worst_calls(self, syn: SynthesisSettings) -> dict[str, int]:
        critique = self.improve and self.sample_feedback
        return {
            "feedback": int(self.describe) + int(self.critique_reference),
            "unit": 1,
            "sample": 1 + int(self.improve) + int(critique),
        }

    def feature_description(self, feature: str, feedback: ReferenceFeedback | None) -> str | None:
        if not self.describe or feedback is None:
            return ""
        return dict(feedback.features()).get(feature)

    def sample_inputs(self, ref: Reference, instruction: str, feedback: ReferenceFeedback | None) -> dict[str, Any]:
        return dict(
            reference_instruction=ref.instruction,
            reference_response=ref.response,
            instruction=instruction,
            feedback=feedback.response_feedback if feedback else None,
        )

    def record_fields(
        self, instruction: str, ref: Reference, pred: dspy.Prediction, syn: SynthesisSettings
    ) -> dict[str, Any]:
        improved = pred.get("improved_response")
        if self.improve and not (improved or "").strip():
            raise ValueError("the improver returned an empty improved_response")
        return dict(
            instruction=instruction,
            response=(pred.response or "").strip(),
            analysis=dumped(pred.get("analysis")),
            implementation_strategy=dumped(pred.get("implementation_strategy")),
            improved_response=improved,
        )


class Switches(NamedTuple):
    """One method of the family: where `refed methods` lists it (rank), what it says of it, and its switches."""

    rank: int
    summary: str
    doc: str
    describe: bool
    critique_reference: bool
    improve: bool
    sample_feedback: bool


# the paper's method and its three baselines (Mehri et al., EACL 2026)
FAMILY = {
    "refed": Switches(
        0,
        "the paper: reference-level instruction and response feedback",
        "Instructions from the reference's described subject areas and skills; each draft improved with the "
        "reference's response critique (2 feedback calls per reference, 2 calls per sample).",
        describe=True,
        critique_reference=True,
        improve=True,
        sample_feedback=False,
    ),
    "sample_feedback": Switches(
        1,
        "paper baseline: reference instruction feedback, sample-level response feedback",
        "Instructions as refed; each draft critiqued itself (one feedback call per sample), then improved.",
        describe=True,
        critique_reference=False,
        improve=True,
        sample_feedback=True,
    ),
    "instruction_feedback": Switches(
        2,
        "paper baseline: reference instruction feedback, drafts only",
        "Instructions as refed; the draft response is the sample (no improvement step).",
        describe=True,
        critique_reference=False,
        improve=False,
        sample_feedback=False,
    ),
    "no_feedback": Switches(
        3,
        "paper baseline: no feedback",
        'No feedback call at all: one feature ("reference") per reference, the draft is the sample.',
        describe=False,
        critique_reference=False,
        improve=False,
        sample_feedback=False,
    ),
}

for _name, _switches in FAMILY.items():  # each a class of this module by its name (Refed, NoFeedback...): it pickles
    _class = "".join(word.title() for word in _name.split("_"))
    _attrs = {k: v for k, v in _switches._asdict().items() if k != "doc"}
    globals()[_class] = METHODS.register(
        type(
            _class,
            (ReferenceSynthesisMethod,),
            {**_attrs, "__module__": __name__, "__doc__": _switches.doc, "name": _name},
        )
    )
