"""Proving the data by training on it: a student fine-tuned on a run's samples (`train_student`, `refed train`).

Its modules: student.py (the model and tokenizer loaded, a pair in the student's chat template) and fine_tune.py (the
LoRA training, its checkpoints, resumption and summary). Torch, transformers and peft load only when a training starts.
"""

from refed_dspy.training.fine_tune import TrainSummary, train_student

__all__ = ["TrainSummary", "train_student"]
