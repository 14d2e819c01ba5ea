"""A worker's view of the run's cache through its server (refed_dspy.launch.ray.cache_server), with a stand-in for Ray."""

from __future__ import annotations

from refed_dspy.launch.ray.cache_server import RemoteRunCache


class _Method:
    def __init__(self, sent: list, answer=None):
        self.sent, self.answer = sent, answer

    def remote(self, *args):
        self.sent.append(args)
        return self.answer


class _Server:
    def __init__(self):
        self.sent: list = []
        self.get = _Method(self.sent, answer="cached")
        self.put = _Method(self.sent, answer="written")


class _Ray:
    def __init__(self):
        self.waited: list = []

    def get(self, ref, timeout=None):
        self.waited.append(ref)
        return ref


def test_no_key_travels_to_the_server_and_an_answer_is_kept_before_the_worker_goes_on():
    """What the cache key leaves out (a key DSPy put in the request, the endpoint) is not sent in the Ray object; a
    write is waited for (fire-and-forget writes were lost when the worker or the run ended right after)."""
    server, ray = _Server(), _Ray()
    cache = RemoteRunCache(server, ray)
    request = {"model": "azure/dep", "messages": [{"role": "user", "content": "hi"}], "api_key": "sk-secret"}
    ignored = ["api_key", "api_base", "base_url"]
    assert cache.get(request, ignored) == "cached"
    cache.put(request, {"reply": 1}, ignored)
    assert all("sk-secret" not in repr(args) for args in server.sent), server.sent
    assert [args[0] for args in server.sent] == [{k: v for k, v in request.items() if k != "api_key"}] * 2
    assert ray.waited == ["cached", "written"]
