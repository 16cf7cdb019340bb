# cython: language_level=3
"""One input of h2's stream state machine, stepped from C (issue 26; h2read.pyx and h2write.pyx use it).

Why: ``H2StreamStateMachine.process_input`` checks the input's class and looks up ``(state, input)`` in h2's
transition table, hashing two Enum members in Python each time; a request takes five steps. ``Steps`` reads
the same table once, at import, into one row per input indexed by the state (``StreamState`` is an IntEnum),
and does what ``process_input`` does with the entry: the new state, then the entry's function with the old
state; a ProtocolError (or an AssertionError, as a ProtocolError) from it closes the stream, as in h2. A pair
h2 has no transition for is handed to ``process_input`` itself, so its error and its closing of the stream
are h2's own.

The six functions a request's steps run (a request received, its END_STREAM, its DATA; the response's HEADERS,
its END_STREAM) are done here as well when their own checks pass (``_fast``): the same flags set, the same
events with the attributes their dataclass ``__init__`` gives, in its order. Each was a Python frame, and each
event a keyword ``__init__`` (~3,500 instructions); a check that fails (h2's ProtocolError or assertion) runs
h2's function itself, so its error is h2's.
"""

from cpython.object cimport PyObject, PyTypeObject

import dataclasses

from h2.events import DataReceived, RequestReceived, StreamEnded, _ResponseSent, _TrailersSent
from h2.exceptions import ProtocolError
from h2.stream import H2StreamStateMachine, StreamClosedBy, StreamState, _transitions

cdef object CLOSED = StreamState.CLOSED
cdef object BY_RECV_END = StreamClosedBy.RECV_END_STREAM
cdef object BY_SEND_END = StreamClosedBy.SEND_END_STREAM
cdef tuple _NO_ARGS = ()


cdef object new_plain(type cls):
    """``cls.__new__(cls)`` for a class that takes object's ``__new__`` (h2's events, streams, state machines,
    window managers): its slot called directly, without ``object.__new__``'s Python-level wrapper (~350
    instructions a call); any other ``__new__`` is called as Python calls it."""
    cdef PyTypeObject *t = <PyTypeObject *>cls
    if t.tp_new is (<PyTypeObject *>object).tp_new:
        return t.tp_new(cls, <PyObject *>_NO_ARGS, NULL)
    return cls.__new__(cls)

cdef enum:
    PY = 0  # h2's own function
    REQUEST_RECEIVED = 1
    STREAM_HALF_CLOSED = 2
    STREAM_ENDED = 3
    DATA_RECEIVED = 4
    RESPONSE_SENT = 5
    SEND_END_STREAM = 6


cdef tuple _defaults(cls):
    """An event dataclass's fields after ``stream_id``, with their defaults, in ``__init__``'s order; None if
    its ``__init__`` does more than set them (a ``__post_init__``, a field with no default but stream_id)."""
    if hasattr(cls, "__post_init__"):
        return None
    out = []
    for f in dataclasses.fields(cls):
        if f.name == "stream_id":
            if out:
                return None
            continue
        if f.default is dataclasses.MISSING or f.default_factory is not dataclasses.MISSING or not f.init:
            return None
        out.append((f.name, f.default))
    return tuple(out)


cdef tuple REQUEST_FIELDS = _defaults(RequestReceived)
cdef tuple ENDED_FIELDS = _defaults(StreamEnded)
cdef tuple DATA_FIELDS = _defaults(DataReceived)

cdef dict CODES = {}
if REQUEST_FIELDS is not None:
    CODES[H2StreamStateMachine.request_received] = REQUEST_RECEIVED
if ENDED_FIELDS is not None:
    CODES[H2StreamStateMachine.stream_half_closed] = STREAM_HALF_CLOSED
    CODES[H2StreamStateMachine.stream_ended] = STREAM_ENDED
if DATA_FIELDS is not None:
    CODES[H2StreamStateMachine.data_received] = DATA_RECEIVED
CODES[H2StreamStateMachine.response_sent] = RESPONSE_SENT
CODES[H2StreamStateMachine.send_end_stream] = SEND_END_STREAM


cdef object _event(cls, tuple fields, stream_id):
    """``cls(stream_id=stream_id)`` for an h2 event dataclass: its attributes set in ``__init__``'s order (the
    instances keep CPython's shared-key layout)."""
    event = new_plain(cls)
    event.stream_id = stream_id
    for name, default in fields:
        setattr(event, name, default)
    return event


cdef object _fast(int code, machine, target):
    """The function ``code`` stands for, when its checks pass; None (nothing changed): h2's function runs."""
    if code == REQUEST_RECEIVED:
        if machine.headers_received or machine.trailers_received:
            return None
        machine.state = target
        machine.client = False
        machine.headers_received = True
        return [_event(RequestReceived, REQUEST_FIELDS, machine.stream_id)]
    if code == STREAM_HALF_CLOSED:
        machine.state = target
        return [_event(StreamEnded, ENDED_FIELDS, machine.stream_id)]
    if code == STREAM_ENDED:
        machine.state = target
        machine.stream_closed_by = BY_RECV_END
        return [_event(StreamEnded, ENDED_FIELDS, machine.stream_id)]
    if code == DATA_RECEIVED:
        if not machine.headers_received:
            return None
        machine.state = target
        return [_event(DataReceived, DATA_FIELDS, machine.stream_id)]
    if code == RESPONSE_SENT:
        if not machine.headers_sent:
            if machine.client is not False:
                return None
            machine.state = target
            machine.headers_sent = True
            return [new_plain(_ResponseSent)]
        if machine.trailers_sent:
            return None
        machine.state = target
        machine.trailers_sent = True
        return [new_plain(_TrailersSent)]
    if code == SEND_END_STREAM:
        machine.state = target
        machine.stream_closed_by = BY_SEND_END
        return []
    return None


cdef class Steps:
    def __init__(self, inp):
        self.inp = inp
        self.row = [None] * (max(int(s) for s in StreamState) + 1)
        for (state, each), (func, target) in _transitions.items():
            if each is inp:
                self.row[int(state)] = (func, target, CODES.get(func, PY) if func is not None else PY)

    cdef int run(self, object machine) except -1:
        """``step`` when its events are not wanted (a response's own steps in h2write.pyx, which drops them as
        h2's ``send_headers`` and ``send_data`` do): the same state changes, without making the events and their
        list for the response's steps (its HEADERS, DATA and END_STREAM); any other entry is ``step``'s."""
        state = machine.state
        entry = self.row[<Py_ssize_t>state]
        if entry is not None and type(machine) is H2StreamStateMachine:
            func, target, code = <tuple>entry
            if code == RESPONSE_SENT:
                if not machine.headers_sent:
                    if machine.client is False:
                        machine.state = target
                        machine.headers_sent = True
                        return 0
                elif not machine.trailers_sent:
                    machine.state = target
                    machine.trailers_sent = True
                    return 0
            elif code == SEND_END_STREAM:
                machine.state = target
                machine.stream_closed_by = BY_SEND_END
                return 0
            elif func is None:
                machine.state = target
                return 0
        self.step(machine)
        return 0

    cpdef object step(self, object machine):
        state = machine.state
        entry = self.row[<Py_ssize_t>state]
        if entry is None:
            return machine.process_input(self.inp)  # (h2 raises, and closes the stream, as it does)
        func, target, code = <tuple>entry
        if code != PY and type(machine) is H2StreamStateMachine:  # (not a subclass that may override it)
            events = _fast(code, machine, target)
            if events is not None:
                return events
        machine.state = target
        if func is None:
            return []
        try:
            return func(machine, state)
        except ProtocolError:
            machine.state = CLOSED
            raise
        except AssertionError as err:
            machine.state = CLOSED
            raise ProtocolError(err) from err
