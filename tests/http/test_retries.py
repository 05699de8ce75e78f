"""A tenacity-retried client against injected 503s: the engine's per-request events say which
requests reached the server, `assert_http_retries` checks the client retried exactly those
answered 503 (honouring Retry-After), and `assert_backoff` holds on the wire view."""

from __future__ import annotations

import httpx
import pytest
import tenacity

from pytest_chaos.assertions import (
    ChaosAssertionError,
    assert_backoff,
    assert_http_retries,
    http_attempts,
    http_requests,
)
from pytest_chaos.chaos import Chaos
from pytest_chaos.policies import Exponential
from tests.assertions.helpers import assert_message
from tests.http.servers import Upstream

CALLS = 12
POLICY = Exponential.tenacity(multiplier=0.05, max=0.4)
# Generous: the machine is shared and noisy; the claim is that the wire shows the backoff.
TOLERANCE = 0.15


def retrying(wait: tenacity.wait.wait_base) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda answer: answer.status_code == 503),
        wait=wait,
        stop=tenacity.stop_after_attempt(30),
        reraise=True,
    )


@pytest.mark.http_error("api", status=503, probability=0.5)
def test_a_retried_client_against_half_its_requests_failing(
    chaos: Chaos, api_url: str, upstream: Upstream
) -> None:
    retry = retrying(tenacity.wait_exponential(multiplier=0.05, max=0.4))
    with httpx.Client(base_url=api_url, timeout=10) as http:
        for call in range(CALLS):
            assert retry(http.get, f"/items/{call}").status_code == 200
    seen = http_requests(chaos, "api")
    # Each call reached the server exactly once: its last try; the 503s never left the proxy.
    assert [r.path for r in seen if r.reached_upstream] == upstream.targets()
    assert upstream.targets() == [f"/items/{call}" for call in range(CALLS)]
    assert all(r.status == 503 and r.fault == "http_error" for r in seen if not r.reached_upstream)
    assert 0 < sum(r.status == 503 for r in seen) < 5 * CALLS
    assert_http_retries(chaos, "api", calls=CALLS)
    retried = [
        call for call in range(CALLS) if len(http_attempts(chaos, "api", path=f"/items/{call}")) > 1
    ]
    assert retried  # with 12 calls at 0.5, all passing at the first try has odds of 1 in 4096
    for call in retried:
        assert_backoff(
            http_attempts(chaos, "api", path=f"/items/{call}"), POLICY, tolerance=TOLERANCE
        )


def wait_for_retry_after(state: tenacity.RetryCallState) -> float:
    answer = state.outcome.result() if state.outcome is not None else None
    return float(answer.headers.get("retry-after", 0)) if answer is not None else 0.0


@pytest.mark.http_error("api", status=503, retry_after=1, first=2)
def test_a_client_honouring_retry_after(chaos: Chaos, api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=10) as http:
        assert retrying(wait_for_retry_after)(http.get, "/pay").status_code == 200
    assert_http_retries(chaos, "api", calls=1)
    assert [r.status for r in http_requests(chaos, "api")] == [503, 503, 200]


@pytest.mark.http_error("api", status=503, retry_after=1, first=1)
def test_a_client_ignoring_retry_after_is_caught(chaos: Chaos, api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=10) as http:
        assert retrying(tenacity.wait_fixed(0.05))(http.get, "/pay").status_code == 200
    with pytest.raises(ChaosAssertionError) as failure:
        assert_http_retries(chaos, "api")
    assert_message(
        failure.value,
        "Retries came before the Retry-After delay.\n"
        "- GET /pay -> 503 by http_error (Retry-After: 1s) at <+s>, retried after <s>"
        " (expected >= 1.00s)  <-- too early\n"
        "Hint: does the client read Retry-After (urllib3: Retry(respect_retry_after_header=True);"
        " tenacity: a wait function that reads it from the answer)?",
    )


@pytest.mark.http_error("api", status=503, first=2)
def test_a_client_that_does_not_retry_is_caught(chaos: Chaos, api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=10) as http:
        statuses = [http.get(path).status_code for path in ("/a", "/b", "/c")]
    assert statuses == [503, 503, 200]
    with pytest.raises(ChaosAssertionError) as failure:
        assert_http_retries(chaos, "api")
    assert_message(
        failure.value,
        "Requests answered 503 were not retried (2 of 2).\n"
        "- GET /a -> 503 by http_error at <+s>  <-- not retried\n"
        "- GET /b -> 503 by http_error at <+s>  <-- not retried\n"
        "- GET /c -> 200 at <+s>\n"
        "Hint: does the client's retry condition cover HTTP 503 (e.g. tenacity's"
        " retry_if_result on the status, or raise_for_status() inside the retried call)?",
    )


@pytest.mark.http_error("api", status=404, first=1)
def test_a_client_retrying_what_it_should_not_is_caught(chaos: Chaos, api_url: str) -> None:
    retry = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda answer: answer.status_code != 200),
        stop=tenacity.stop_after_attempt(3),
    )
    with httpx.Client(base_url=api_url, timeout=10) as http:
        assert retry(http.get, "/gone").status_code == 200
    with pytest.raises(ChaosAssertionError) as failure:
        assert_http_retries(chaos, "api", calls=1)
    assert_message(
        failure.value,
        "Expected 1 call and their retries, saw 2 first tries in 2 requests.\n"
        "- GET /gone -> 404 by http_error at <+s>\n"
        "- GET /gone -> 200 at <+s>\n"
        "Hint: a request sent again after an answer outside the retried statuses is a new call:"
        " is the client retrying other statuses or errors too?",
    )
