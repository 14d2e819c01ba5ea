"""Money and counting in one place: what a call's usage is and how it is written (usage), a call opened on a ledger at
its reservation (tickets) and the output it is expected to write (expected_output), the call and cost budget of a run
(budget, with what it holds for the calls in flight, how it refuses and how it stops spending), the write-ahead log of
the calls made for a directory (call_log) and what a line of a write-ahead file may hold (lines)."""
