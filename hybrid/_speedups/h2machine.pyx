# cython: language_level=3
"""One input of h2's stream state machine, stepped from C (issue 26; h2read.pyx and h2write.pyx use it).

Why: ``H2StreamStateMachine.process_input`` checks the input's class and looks up ``(state, input)`` in h2's
transition table, hashing two Enum members in Python each time; a request takes five steps. ``Steps`` reads
the same table once, at import, into one row per input indexed by the state (``StreamState`` is an IntEnum),
and does what ``process_input`` does with the entry: the new state, then the entry's function with the old
state; a ProtocolError (or an AssertionError, as a ProtocolError) from it closes the stream, as in h2. A pair
h2 has no transition for is handed to ``process_input`` itself, so its error and its closing of the stream
are h2's own.
"""

from h2.exceptions import ProtocolError
from h2.stream import StreamState, _transitions

cdef object CLOSED = StreamState.CLOSED


cdef class Steps:
    def __init__(self, inp):
        self.inp = inp
        self.row = [None] * (max(int(s) for s in StreamState) + 1)
        for (state, each), entry in _transitions.items():
            if each is inp:
                self.row[int(state)] = entry

    cpdef object step(self, object machine):
        state = machine.state
        entry = self.row[<Py_ssize_t>state]
        if entry is None:
            return machine.process_input(self.inp)  # (h2 raises, and closes the stream, as it does)
        func, target = <tuple>entry
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
