"""Provider batches: a stage's calls sent to a provider's batch API instead of one HTTP request each.

broker.py (the broker that gathers a stage's requests, submits, polls and hands back each answer), api.py (the clients
of the providers' batch APIs, one per protocol), store.py (the write-ahead record of a run's batches), usage.py (what
the provider answered and may still bill), status.py (the batches as `refed status` shows them) and link.py (what the
engine does differently under batches).
"""
