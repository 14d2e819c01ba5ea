"""Provider batches: a stage whose calls go to a provider's batch API instead of one HTTP request each.

answers.py (BatchAnswers: what the engine asks of the answers its work waits on; BatchReport: the run's batches as it
reports them), books.py (BatchBooks: the stage's money at the batch price, with what the batch store holds that no
record does), broker.py (the broker that gathers a stage's requests, submits, polls and hands back each answer), api.py
(the clients of the providers' batch APIs, one per protocol) and store.py (the write-ahead record of a run's batches,
the batches as `refed status` shows them, and what the provider answered and may still bill).
"""
