"""Provider batches: a run transport whose stage's calls go to a provider's batch API instead of one HTTP request each.

transport.py (BatchTransport: what the engine and its stage ask of it), broker.py (the broker that gathers a stage's
requests, submits, polls and hands back each answer), api.py (the clients of the providers' batch APIs, one per
protocol) and store.py (the write-ahead record of a run's batches, the batches as `refed status` shows them, and
what the provider answered and may still bill).
"""
