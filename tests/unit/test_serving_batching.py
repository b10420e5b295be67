"""Adaptive batching (components/core/serving/batching.py) with a stand-in model: which requests
share a call, that each caller gets its own rows, the size limit, and that a request that makes
the model fail fails alone. No HTTP, no TensorFlow; the server-level test is in
tests/integration/test_serving_api.py (test_requests_that_arrive_together_share_a_forward_pass)."""

import asyncio
import threading

import numpy as np
import pytest

from components.core.serving.batching import AdaptiveBatcher

BAD = 255  # an image whose first pixel is this makes the stand-in model raise


class StandIn:
    """A "model" whose answer for an image is its first pixel value; records every call."""

    def __init__(self):
        self.calls: list[list[int]] = []
        self.threads: set[str] = set()

    def __call__(self, pixels: np.ndarray, sizes: list) -> list[dict]:
        values = [int(img[0, 0, 0]) for img in pixels]
        self.calls.append(values)
        self.threads.add(threading.current_thread().name)
        if BAD in values:
            raise ValueError(f"cannot run an image with value {BAD}")
        return [{"value": v, "size": s} for v, s in zip(values, sizes)]


def images(*values: int, side: int = 2) -> np.ndarray:
    return np.stack([np.full((side, side, 3), v, np.uint8) for v in values])


async def submit_all(batcher: AdaptiveBatcher, requests: list[np.ndarray]) -> list:
    return await asyncio.gather(
        *(batcher.submit(px, [(i, len(px))] * len(px)) for i, px in enumerate(requests)), return_exceptions=True
    )


def test_requests_that_arrive_together_share_one_call_and_each_gets_its_own_rows():
    model = StandIn()
    batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_s=0.5)
    requests = [images(1), images(2, 3), images(4), images(5, 6, 7)]
    answers = asyncio.run(submit_all(batcher, requests))
    assert [[r["value"] for r in a] for a in answers] == [[1], [2, 3], [4], [5, 6, 7]]
    assert [[r["size"] for r in a] for a in answers] == [[(0, 1)], [(1, 2)] * 2, [(2, 1)], [(3, 3)] * 3]
    assert model.calls == [[1, 2, 3, 4, 5, 6, 7]]  # one call for all four
    assert model.threads == {"model_0"}  # on the one model thread, not the event loop's


def test_a_batch_never_exceeds_max_batch_size_and_no_request_is_split_or_reordered():
    model = StandIn()
    batcher = AdaptiveBatcher(model, max_batch_size=4, max_latency_s=0.5)
    requests = [images(1, 2), images(3, 4, 5), images(6), images(7, 8, 9, 10, 11)]
    answers = asyncio.run(submit_all(batcher, requests))
    assert [[r["value"] for r in a] for a in answers] == [[1, 2], [3, 4, 5], [6], [7, 8, 9, 10, 11]]
    # [1, 2] + [3, 4, 5] would be 5: the second waits for the next call. A request bigger than
    # the limit runs alone, whole.
    assert model.calls == [[1, 2], [3, 4, 5, 6], [7, 8, 9, 10, 11]]


def test_a_request_that_makes_the_model_fail_fails_alone():
    model = StandIn()
    batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_s=0.5)
    answers = asyncio.run(submit_all(batcher, [images(1), images(2, BAD), images(3)]))
    assert [r["value"] for r in answers[0]] == [1] and [r["value"] for r in answers[2]] == [3]
    assert isinstance(answers[1], ValueError) and "value 255" in str(answers[1])
    assert model.calls == [[1, 2, BAD, 3], [1], [2, BAD], [3]]  # the batch, then each request alone


def test_images_of_different_sizes_run_in_separate_calls():
    model = StandIn()
    batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_s=0.5)
    answers = asyncio.run(submit_all(batcher, [images(1, side=2), images(2, side=3), images(3, side=2)]))
    assert [[r["value"] for r in a] for a in answers] == [[1], [2], [3]]
    assert sorted(model.calls) == [[1, 3], [2]]


def test_requests_that_do_not_arrive_together_run_alone():
    model = StandIn()
    batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_s=0.0)

    async def one_after_another():
        return [await batcher.submit(images(v)) for v in (1, 2, 3)]

    assert [a[0]["value"] for a in asyncio.run(one_after_another())] == [1, 2, 3]
    assert model.calls == [[1], [2], [3]]


def test_a_caller_that_went_away_does_not_stop_the_others():
    model = StandIn()
    batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_s=0.2)

    async def main():
        gone = asyncio.ensure_future(batcher.submit(images(1)))
        stays = asyncio.ensure_future(batcher.submit(images(2)))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client hung up while its request waited for company
        return await stays

    assert [r["value"] for r in asyncio.run(main())] == [2]
    assert model.calls == [[2]]


def test_work_on_the_model_thread_runs_between_batches():
    model = StandIn()
    batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_s=0.0)

    async def main():
        await batcher.submit(images(1))
        return await batcher.run_exclusive(lambda: threading.current_thread().name)

    assert asyncio.run(main()) == "model_0"


@pytest.mark.parametrize("size,latency", [(0, 0.0), (4, -1.0)])
def test_limits_must_make_sense(size, latency):
    with pytest.raises(ValueError, match="max_batch_size"):
        AdaptiveBatcher(StandIn(), max_batch_size=size, max_latency_s=latency)


def test_a_batch_waits_for_requests_announced_as_on_their_way():
    """Under load the next requests are still being decoded when a pass ends: a batch waits for
    them (up to max_incoming_wait_s) instead of running the first one alone."""
    model = StandIn()
    batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_s=0.0, max_incoming_wait_s=30.0)

    async def decoded_later(value: int):
        with batcher.incoming():
            await asyncio.sleep(0.05)  # decoding
            answer = batcher.submit(images(value))
        return await answer

    async def main():
        later = asyncio.ensure_future(decoded_later(2))
        await asyncio.sleep(0)  # it is announced before the first request is queued
        first = await batcher.submit(images(1))
        return first, await later

    first, later = asyncio.run(main())
    assert (first[0]["value"], later[0]["value"]) == (1, 2)
    assert model.calls == [[1, 2]]


def test_an_announced_request_that_fails_to_decode_is_not_waited_for():
    model = StandIn()
    batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_s=0.0, max_incoming_wait_s=30.0)

    async def fails_to_decode():
        with batcher.incoming():
            await asyncio.sleep(0.05)
            raise ValueError("not an image")

    async def main():
        doomed = asyncio.ensure_future(fails_to_decode())
        await asyncio.sleep(0)
        started = asyncio.get_running_loop().time()
        answer = await batcher.submit(images(1))
        with pytest.raises(ValueError):
            await doomed
        return answer, asyncio.get_running_loop().time() - started

    answer, took = asyncio.run(main())
    assert answer[0]["value"] == 1 and model.calls == [[1]]
    assert took < 10  # not the 30 s bound: the batch went once nothing was on its way
