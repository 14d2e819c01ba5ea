"""How a refed command lives in its process: stopping on a signal (stops), coroutines run from synchronous code and
stopped with it (sync), concurrent calls awaited so that none outlives its caller (gather), other libraries' noise kept
off the terminal (quiet), and the points where a test may kill it (checkpoints)."""
