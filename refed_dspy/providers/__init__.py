"""What refed knows of each LM provider, in one place (issue 45: being gathered here from clients/, adapters/,
engine/ and synthesis/)."""
