"""Proving the data by training on it: a student fine-tuned on a run's samples (`train_student`, `refed train`), and
two students compared by the judge (`evaluate_students`, `refed evaluate`).

Its modules: student.py (the model and tokenizer loaded, a pair in the student's chat template, its answers),
fine_tune.py (the LoRA training, its checkpoints, resumption and summary) and evaluate.py (the answers, the pairwise
judging on the launch path, the win rates). Torch, transformers and peft load only when a model is needed.
"""

from refed_dspy.training.evaluate import Evaluation, evaluate_students
from refed_dspy.training.fine_tune import TrainSummary, train_student

__all__ = ["Evaluation", "TrainSummary", "evaluate_students", "train_student"]
