"""Reference-level instruction feedback: what a reference instruction is about and what it demands."""

import dspy

from refed_dspy.signatures.bounds import DESCRIPTION_CHARS, text_output


class DescribeInstruction(dspy.Signature):
    """Study a high-quality instruction and the response written for it, then characterize the
    instruction so that new instructions of the same kind and difficulty can be written from your
    description. Describe the subject areas it touches and the skills a strong answer needs. Be
    specific enough to guide a writer, general enough that many different instructions fit."""

    reference_instruction: str = dspy.InputField()
    reference_response: str = dspy.InputField()
    subject_areas: str = text_output(
        DESCRIPTION_CHARS, "The domains, topics and kinds of knowledge the instruction involves."
    )
    relevant_skills: str = text_output(
        DESCRIPTION_CHARS, "The abilities a response must show: reasoning, writing, coding, planning, and so on."
    )
