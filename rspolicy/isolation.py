"""Run work on hostile files in a worker process with a time and memory limit.

Products reach libtiff, GDAL and HDF5, C code that crafted bytes can hang,
crash (SIGSEGV, abort) or drive to exhaust memory. :func:`run_isolated` runs
such work in a persistent worker process so that a hang or a crash ends only
the call (the caller blocks that one product), never the run or the audit log.

The worker
    One per parent process, forked from the already-imported parent on first
    use (a fresh interpreter would spend ~0.4 s importing rasterio and numpy;
    a warm round trip costs tens of microseconds), and reused until it times
    out, crashes or runs out of memory; the next call then forks a fresh one.
    Calls from several threads are serialised by one lock: the gate screens one
    product after another, and a single worker keeps the memory cost at one
    process. The worker's standard output goes to the parent's standard error,
    because the command line prints JSON lines on standard output and C
    libraries print diagnostics. The worker is a snapshot of the parent at its
    first call: module state, environment variables and GDAL settings changed
    in the parent afterwards (a monkeypatch in a test, a ``rasterio.Env`` around
    the call) do not reach it; :func:`shutdown` makes the next call fork anew.

Limits (:class:`Limits`)
    ``seconds`` is the wall-clock budget of one call, measured by the parent,
    which kills the worker (SIGKILL) when it runs out. ``memory_bytes`` is the
    address space a call may add to the worker: the worker's ``RLIMIT_AS`` is
    its own size when forked plus this amount. The worker starts as a copy of
    the parent, whose address space (numpy's BLAS buffers, GDAL's cache) is
    already hundreds of MiB and grows with the number of cores, so a bare
    ``RLIMIT_AS`` of a few hundred MiB would leave the worker unable to
    allocate anything at all.

What crosses the pipe
    ``fn`` (a module-level function), its arguments and its result are
    pickled. An exception raised by ``fn`` is raised again in the caller as
    the same type with the same attributes (``ProductReadError`` keeps its
    ``path`` and ``problem``) whenever it can be rebuilt; otherwise, and for
    every failure of the worker itself, :class:`IsolationError` says in one
    line what happened.

``RSPOLICY_ISOLATION=off`` runs ``fn`` in the calling process, without limits:
for debugging, and for platforms without ``fork``.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import math
import os
import pickle
import queue
import resource
import select
import signal
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from rspolicy.errors import RSPolicyError

__all__ = ["ENV_SWITCH", "IsolationError", "Lanes", "Limits", "isolation_enabled", "run_isolated", "shutdown"]

R = TypeVar("R")

#: The environment variable that, set to ``off``, runs every call in process.
ENV_SWITCH: Final = "RSPOLICY_ISOLATION"

_HEADER: Final = struct.Struct("!Q")
_MIB: Final = 1 << 20
_MAX_POLL_MS: Final = 60_000  # poll() takes a C int of milliseconds; long limits wait in slices

# Reply kinds sent by the worker.
_OK: Final = "ok"                  # the pickled result follows
_RAISED: Final = "raised"          # a pickled exception that unpickles as itself
_REBUILT: Final = "rebuilt"        # (type, args, __dict__) of an exception whose pickle does not round-trip
_FAILED: Final = "failed"          # a one-line description of what went wrong in the worker
_NO_MEMORY: Final = "no-memory"    # fn or the reply ran out of memory


class IsolationError(RSPolicyError):
    """Isolated work did not complete: timed out, crashed, ran out of memory, or could not cross the pipe.

    Parameters
    ----------
    problem
        What happened, e.g. ``"timed out after 60 s"`` or ``"crashed (signal SIGSEGV)"``.
        Line breaks are folded so that the message is always one line.
    """

    def __init__(self, problem: str) -> None:
        self.problem = _one_line(problem)
        super().__init__(self.problem)

    def __str__(self) -> str:
        return self.problem


@dataclass(frozen=True)
class Limits:
    """What one isolated call may spend.

    Parameters
    ----------
    seconds
        Wall-clock time for the whole call, round trip included.
    memory_bytes
        Address space the call may add to the worker (``RLIMIT_AS`` is set to
        the worker's size at fork plus this); ``None`` for no limit.
    """

    seconds: float = 120.0
    memory_bytes: int | None = 4 << 30

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float) \
                or not math.isfinite(self.seconds) or self.seconds <= 0:
            raise IsolationError(f"invalid limits: seconds must be a positive number, got {self.seconds!r}")
        if self.memory_bytes is not None and (isinstance(self.memory_bytes, bool)
                                              or not isinstance(self.memory_bytes, int) or self.memory_bytes <= 0):
            raise IsolationError(f"invalid limits: memory_bytes must be a positive integer or None, "
                                 f"got {self.memory_bytes!r}")


_DEFAULT_LIMITS: Final = Limits()


def isolation_enabled() -> bool:
    """Whether :func:`run_isolated` uses the worker process (``RSPOLICY_ISOLATION`` is not ``off``).

    Returns
    -------
    bool
        False when the environment switch is ``off`` or when this process is
        itself the worker (work there is already isolated).
    """
    if _state.in_worker:
        return False
    return os.environ.get(ENV_SWITCH, "").strip().lower() != "off"


def run_isolated(fn: Callable[..., R], *args: Any, limits: Limits = _DEFAULT_LIMITS, lane: int = 0,
                 nested: bool = False, **kwargs: Any) -> R:
    """Call ``fn(*args, **kwargs)`` in the worker process and return its result.

    Parameters
    ----------
    fn
        A module-level function (it is pickled by reference). Its keyword
        arguments cannot include ones named ``limits``, ``lane`` or ``nested``.
    *args, **kwargs
        Its arguments; they and the result must pickle.
    limits
        Time and memory for this call.
    lane
        Which worker: each lane has a worker process of its own, and calls on
        different lanes run at the same time (``enforce --jobs`` uses lanes
        1..N, each from one thread; lane 0 serves everything else).
    nested
        Let ``fn`` isolate its own calls in a worker of its own (a product's
        reads inside the worker that degrades it); otherwise, in a worker,
        they run in place.

    Returns
    -------
    R
        What ``fn`` returned.

    Raises
    ------
    IsolationError
        The call timed out, the worker crashed, exited or ran out of memory,
        or the call or its outcome could not cross the pipe. The worker is
        replaced before the next call whenever its state is in doubt.
    Exception
        Whatever ``fn`` raised, as the same type, when it can be rebuilt in
        this process.
    """
    if not isolation_enabled():
        return fn(*args, **kwargs)
    if not hasattr(os, "fork"):
        raise IsolationError(f"this platform cannot fork a worker process; set {ENV_SWITCH}=off to run in process")
    try:
        request = pickle.dumps((limits.memory_bytes, nested, fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - whatever pickle raises, the call cannot be sent
        raise IsolationError(f"cannot send {_name(fn)} to the worker process: {type(exc).__name__}: {exc}") from None
    chosen = _state.lane(lane)
    with chosen.lock:
        reply = _round_trip(request, limits, chosen)
    return _unpack(reply, fn, limits)  # type: ignore[no-any-return]


def shutdown(lanes: Iterable[int] | None = None) -> None:
    """Stop the worker processes (of the given lanes, else all), and reap them; the next call forks anew.

    Registered with :mod:`atexit`. Safe to call at any time, from any thread.
    """
    for number, lane in list(_state.lanes.items()):
        if lanes is not None and number not in lanes:
            continue
        # At interpreter exit a daemon thread may still hold the lock in a call; do not wait for it forever.
        acquired = lane.lock.acquire(timeout=5.0)
        try:
            worker, lane.worker = lane.worker, None
            if worker is not None:
                worker.kill()
        finally:
            if acquired:
                lane.lock.release()


class Lanes:
    """Lanes 1..``count``, lent to threads one at a time, so that calls from several threads run side by side.

    A thread borrows a lane for its call to :func:`run_isolated` and gives it
    back after; :meth:`shutdown` stops the lanes' workers (all the lanes a run
    used are its own, forked for it).

    Parameters
    ----------
    count
        How many lanes (worker processes) at most.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for number in range(1, count + 1):
            self._free.put(number)

    @contextlib.contextmanager
    def borrow(self) -> Iterator[int]:
        """A lane no other thread holds until the block ends."""
        lane = self._free.get()
        try:
            yield lane
        finally:
            self._free.put(lane)

    def shutdown(self) -> None:
        """Stop (and reap) the workers of these lanes; see :func:`shutdown`."""
        shutdown(range(1, self.count + 1))


# --------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------


class _Worker:
    """The parent's handle on one worker process: its pid and the two pipe ends."""

    def __init__(self, pid: int, request_fd: int, reply_fd: int) -> None:
        self.pid = pid
        self.request_fd = request_fd
        self.reply_fd = reply_fd
        # A pidfd sees the worker's death even when something it forked keeps the reply pipe open.
        self.pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(pid)
        self.poller = select.poll()
        self.poller.register(reply_fd, select.POLLIN)
        if self.pidfd is not None:
            self.poller.register(self.pidfd, select.POLLIN)

    def alive(self) -> bool:
        """Whether the worker still runs; a dead one is reaped here when there is no pidfd."""
        if self.pidfd is not None:
            return not select.select([self.pidfd], [], [], 0)[0]
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def close_fds(self) -> None:
        for fd in (self.request_fd, self.reply_fd, self.pidfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def kill(self) -> None:
        """Kill and reap the worker (idle or not); nothing is left behind."""
        self.close_fds()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.reap()

    def reap(self) -> int | None:
        """Wait for the worker to end; its wait status, or None if it was reaped already."""
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
                return status
            except InterruptedError:
                continue
            except ChildProcessError:
                return None


class _Lane:
    """One worker process and the lock that serialises its calls."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.worker: _Worker | None = None


class _State:
    """Module state; replaced wholesale in a forked child so that it never shares the parent's workers or locks."""

    def __init__(self, in_worker: bool = False) -> None:
        self.guard = threading.Lock()
        self.lanes: dict[int, _Lane] = {0: _Lane()}
        self.in_worker = in_worker

    def lane(self, number: int) -> _Lane:
        """The lane ``number``, created on first use."""
        with self.guard:
            return self.lanes.setdefault(number, _Lane())

    @property
    def lock(self) -> threading.Lock:
        """Lane 0's lock."""
        return self.lanes[0].lock

    @property
    def worker(self) -> _Worker | None:
        """Lane 0's worker."""
        return self.lanes[0].worker


_state = _State()
_SPAWN_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    # A child of the parent (any fork) must not write to the parent's worker, nor hold the request pipe
    # open (the worker ends when that pipe hangs up), nor wait on a lock some vanished thread held.
    global _state, _SPAWN_LOCK  # noqa: PLW0603 - the whole state is per process
    _SPAWN_LOCK = threading.Lock()
    workers = [lane.worker for lane in _state.lanes.values()]
    _state = _State(in_worker=_state.in_worker)
    for worker in workers:
        if worker is not None:
            worker.close_fds()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)


def _round_trip(request: bytes, limits: Limits, lane: _Lane) -> tuple[str, Any]:
    """Send one request and wait for its reply within the time limit (caller holds the lane's lock)."""
    deadline = time.monotonic() + limits.seconds
    worker = lane.worker
    if worker is not None and not worker.alive():
        # Killed while idle (by an operator, by the kernel's OOM killer): not this call's doing.
        _discard(worker, lane)
        worker = None
    if worker is None:
        # One fork at a time, each worker recorded before the next fork: a worker forked by another lane's
        # thread must find (and close) this one's pipe, or it would hold it open and this worker would
        # outlive a killed parent.
        with _SPAWN_LOCK:
            worker = lane.worker = _spawn()
    try:
        try:
            _write_all(worker.request_fd, _HEADER.pack(len(request)) + request)
        except (BrokenPipeError, ConnectionResetError):
            return _FAILED, _death(worker, lane)
        reply = _read_reply(worker, deadline, lane)
    except BaseException:
        # Interrupted mid-call (KeyboardInterrupt, an error of our own): the pipe holds half a
        # conversation, so this worker can never be trusted again.
        _discard(worker, lane)
        raise
    if reply is None:
        _discard(worker, lane)
        return _FAILED, f"timed out after {limits.seconds:g} s"
    if isinstance(reply, str):
        return _FAILED, reply
    if reply[0] == _NO_MEMORY:
        # The worker survived the MemoryError, but C libraries rarely do: start afresh.
        _discard(worker, lane)
    return reply


def _discard(worker: _Worker, lane: _Lane) -> None:
    if lane.worker is worker:
        lane.worker = None
    worker.kill()


def _death(worker: _Worker, lane: _Lane) -> str:
    """The worker is gone: reap it and say how it ended."""
    if lane.worker is worker:
        lane.worker = None
    worker.close_fds()
    status = worker.reap()
    if status is None:
        return "worker process ended"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"crashed (signal {name})"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _read_reply(worker: _Worker, deadline: float, lane: _Lane) -> tuple[str, Any] | str | None:
    """The worker's reply, a string saying how it died, or None when the deadline passed first."""
    buffer = bytearray()
    needed = _HEADER.size
    while len(buffer) < needed:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        events = dict(worker.poller.poll(min(math.ceil(remaining * 1000), _MAX_POLL_MS)))
        if worker.reply_fd in events:
            chunk = os.read(worker.reply_fd, max(needed - len(buffer), 1 << 16))
            if not chunk:
                return _death(worker, lane)
            buffer += chunk
            if needed == _HEADER.size and len(buffer) >= _HEADER.size:
                needed += _HEADER.unpack_from(buffer)[0]
        elif worker.pidfd is not None and worker.pidfd in events:
            return _death(worker, lane)
    try:
        reply: tuple[str, Any] = pickle.loads(memoryview(buffer)[_HEADER.size:needed])
    except Exception as exc:  # noqa: BLE001 - an undecodable reply is a failed call, not a crash of the caller
        return _FAILED, f"reply could not be decoded: {type(exc).__name__}: {exc}"
    return reply


def _unpack(reply: tuple[str, Any], fn: Callable[..., Any], limits: Limits) -> Any:
    kind, payload = reply
    if kind == _OK:
        return payload
    if kind == _NO_MEMORY:
        if limits.memory_bytes is None:
            raise IsolationError("ran out of memory")
        raise IsolationError(f"ran out of memory (limit {limits.memory_bytes / _MIB:g} MiB)")
    if kind == _RAISED:
        try:
            exc = pickle.loads(payload)
        except Exception as error:  # noqa: BLE001 - fall back to a description
            raise IsolationError(f"{_name(fn)} raised an exception that cannot be rebuilt: {error}") from None
        raise exc
    if kind == _REBUILT:
        try:
            exc = _rebuild(*pickle.loads(payload))
        except Exception as error:  # noqa: BLE001 - fall back to a description
            raise IsolationError(f"{_name(fn)} raised an exception that cannot be rebuilt: {error}") from None
        raise exc
    raise IsolationError(str(payload))


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    # BaseException.__new__ stores args without calling __init__, whose signature (path, problem)
    # need not match what it passed to super().__init__.
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


# --------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------


def _spawn() -> _Worker:
    """Fork a worker from the calling thread (the caller holds the lock)."""
    # Text still buffered in the parent would otherwise be written a second time by the worker.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns that forking a threaded process may deadlock the child on a lock some
        # other thread held. The worker's time limit bounds exactly that: a stuck worker times out
        # and is replaced.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the worker: never returns into the caller's stack
        code = 70
        try:
            os.close(request_write)
            os.close(reply_read)
            _serve(request_read, reply_write)
            code = 0
        finally:
            os._exit(code)
    os.close(request_read)
    os.close(reply_write)
    return _Worker(pid, request_write, reply_read)


def _serve(request_fd: int, reply_fd: int) -> None:
    _state.in_worker = True
    _become_worker(request_fd)
    no_memory = pickle.dumps((_NO_MEMORY, None), protocol=pickle.HIGHEST_PROTOCOL)
    baseline = _address_space()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    applied: int | None = None
    while True:
        request = _read_request(request_fd)
        if request is None:
            return
        try:
            memory_bytes, nested, fn, args, kwargs = pickle.loads(request)
            del request
            if memory_bytes != applied:
                _limit_memory(baseline, memory_bytes, soft, hard)
                applied = memory_bytes
            # A nested call isolates its own risky calls (in a worker this worker forks).
            _state.in_worker = not nested
            try:
                reply: tuple[str, Any] = (_OK, fn(*args, **kwargs))
            finally:
                _state.in_worker = True
        except MemoryError:
            reply = (_NO_MEMORY, None)
        except Exception as exc:  # noqa: BLE001 - every failure of fn goes back to the caller
            reply = _encode_exception(exc)
        except BaseException as exc:  # noqa: BLE001 - sys.exit() and friends end only this call
            reply = (_FAILED, f"{type(exc).__name__} raised in the worker process: {exc}")
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            data = no_memory
        except Exception as exc:  # noqa: BLE001 - an unpicklable result is the call's failure
            data = pickle.dumps((_FAILED, f"result could not be sent back: {type(exc).__name__}: {exc}"))
        del reply
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        _write_all(reply_fd, _HEADER.pack(len(data)) + data)
        del data


def _become_worker(request_fd: int) -> None:
    # fd 1 carries the command's JSON lines; whatever C code prints here goes to stderr instead.
    # Python's sys.stdout may write elsewhere than fd 1 (a capture, a wrapper), so it follows too.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # A crash of hostile input must leave no core file and no Python traceback behind.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    faulthandler.disable()
    # A crash must end the worker by its signal, whatever handler C code in the parent installed
    # (a fuzzer's, a sanitizer's): the parent names the signal, and nothing else reports it.
    for fatal in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT):
        with contextlib.suppress(OSError, ValueError):
            signal.signal(fatal, signal.SIG_DFL)
    # Ctrl-C reaches the whole process group: the parent handles it (and kills the worker).
    # Handlers the parent installed in Python (cleanup on SIGTERM ...) must not run here.
    for number in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            if number == signal.SIGINT:
                signal.signal(number, signal.SIG_IGN)
            elif callable(signal.getsignal(number)):
                signal.signal(number, signal.SIG_DFL)
    # If the parent dies (even by SIGKILL) while fn hangs, the request pipe hangs up: end too.
    threading.Thread(target=_watch_parent, args=(request_fd,), name="rspolicy-isolation-watch", daemon=True).start()


def _watch_parent(request_fd: int) -> None:
    poller = select.poll()
    poller.register(request_fd, 0)  # no events asked: only hang-up and errors wake it
    while True:
        try:
            if poller.poll():
                os._exit(0)
        except InterruptedError:
            continue


def _address_space() -> int:
    """The virtual size of this process in bytes (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _limit_memory(baseline: int, memory_bytes: int | None, soft: int, hard: int) -> None:
    if memory_bytes is None:
        limit = soft
    else:
        limit = baseline + memory_bytes
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _read_request(fd: int) -> bytes | None:
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    return _read_exactly(fd, _HEADER.unpack(header)[0])


def _read_exactly(fd: int, size: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = os.read(fd, min(size - len(buffer), 1 << 20))
        if not chunk:
            return None
        buffer += chunk
    return bytes(buffer)


def _encode_exception(exc: Exception) -> tuple[str, Any]:
    """The exception as it can best cross the pipe, checked here by rebuilding it."""
    with contextlib.suppress(Exception):
        data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        back = pickle.loads(data)
        if type(back) is type(exc) and str(back) == str(exc):
            return _RAISED, data
    with contextlib.suppress(Exception):
        data = pickle.dumps((type(exc), exc.args, dict(vars(exc))), protocol=pickle.HIGHEST_PROTOCOL)
        back = _rebuild(*pickle.loads(data))
        if type(back) is type(exc) and str(back) == str(exc):
            return _REBUILT, data
    return _FAILED, f"{type(exc).__name__}: {exc}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"
