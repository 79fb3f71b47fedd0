"""Evaluation of a fine-tuned model against a prompted baseline (`train eval`)."""
