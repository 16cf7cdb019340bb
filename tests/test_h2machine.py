"""hybrid/_speedups/h2machine.pyx against h2's ``H2StreamStateMachine.process_input``, which it stands for
(issue 26): every input in every state, on two machines set up alike (client or server side, headers sent or
received before), gives the same events (their classes and attributes), the same new state, the same closing cause and
flags, or the same error with the stream closed as h2 closes it."""

from __future__ import annotations

import itertools

import pytest
from h2.exceptions import H2Error
from h2.stream import H2StreamStateMachine, StreamInputs, StreamState
from hybrid._speedups.h2machine import Steps


def machine(state, client, headers_sent, headers_received, trailers=None):
    m = H2StreamStateMachine(1)
    m.state, m.client = state, client
    m.headers_sent, m.headers_received = headers_sent, headers_received
    m.trailers_sent = m.trailers_received = trailers
    return m


def outcome(call, m):
    try:  # (the events' classes and attributes: the compiled steps make them without their __init__)
        result = ("ok", [(type(e), vars(e)) for e in call(m)])
    except (H2Error, AssertionError) as exc:
        result = ("raised", type(exc))
    return result, m.state, m.stream_closed_by, m.client, m.headers_sent, m.trailers_sent, m.headers_received, \
        m.trailers_received


@pytest.mark.parametrize("inp", list(StreamInputs), ids=lambda i: i.name)
def test_every_transition_as_h2(inp):
    steps = Steps(inp)
    for args in itertools.product(StreamState, (None, False, True), (None, True), (None, True), (None, True)):
        ours, ref = machine(*args), machine(*args)
        assert outcome(steps.step, ours) == outcome(lambda m: m.process_input(inp), ref), args
