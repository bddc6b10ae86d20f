"""A study several worker processes share (`scripts/search.py --storage URL`), on one
machine or many: each worker runs the same command and takes the next trial.

    postgresql://user@host/db, mysql+pymysql://..., sqlite:///path.db
        Optuna's RDBStorage with its heartbeat: a trial whose worker stopped beating for
        GRACE seconds is failed and queued again with its values and run directory
        (Optuna's RetryFailedTrialCallback, RetryHeartbeatStaleTrialCallback since 4.9).
    journal:///path/to/file
        Optuna's JournalStorage on a file (one a shared file system such as NFS serves to
        every host; no database server). Optuna has no heartbeat for it, so each trial
        records its worker (host, pid, the process's start time) and a heartbeat of its own
        in its user attributes; a RUNNING trial whose worker is dead on this host, or whose
        heartbeat is older than GRACE, is failed and queued again the same way.

Trials never collide: the storage numbers them, each has its run directory
`OUT/trials/trial_NNNN`, and a worker starts a trial only while finished + running trials
stay below `--trials` (checked under a lock file beside a journal; on a database, a trial
that finds the budget taken when it starts is failed before any training, marked
`surplus`). So the study ends with `--trials` finished trials, and each worker, having
waited for the others' running trials, writes and reports the same best one.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import socket
import threading
import time
import warnings

from multimodal.errors import ConfigError, RunError

HEARTBEAT = 30  # seconds between two heartbeats of a running trial
GRACE = 600  # a trial silent this long is taken for dead: far above any pause of a live one
POLL = 2.0  # seconds between two looks at the study while other workers' trials run
MAX_RETRY = 3  # a trial that kills its worker every time is not retried for ever
HOST = socket.gethostname()
JOURNAL = "journal://"
# a database driver module -> what to install (SQLAlchemy 2.1's postgresql:// is psycopg 3)
DRIVERS = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pymysql": "pymysql",
           "MySQLdb": "mysqlclient"}
# a dead worker's bookkeeping, not carried over to the trial that retries it
WORKER_ATTRS = ("worker", "heartbeat", "interrupted", "surplus")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux /proc), so a pid reused by a new process is not taken
    for the old worker; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_worker() -> dict:
    pid = os.getpid()
    return {"host": HOST, "pid": pid, "started": _start_time(pid)}


def _gone(worker: dict) -> bool:
    """A worker of this host whose process has ended (its pid free, or another process's)."""
    if not isinstance(worker, dict) or worker.get("host") != HOST:
        return False
    pid = worker.get("pid")
    if not isinstance(pid, int) or not alive(pid):
        return True
    return worker.get("started") is not None and _start_time(pid) != worker["started"]


class Retry:
    """A failed trial queued again with its values and run directory (so it continues from
    its last checkpoint), by Optuna's retry callback; `resumes` names the trial it retries."""

    def __init__(self, log, max_retry: int = MAX_RETRY):
        import optuna

        callback = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
            optuna.storages.RetryFailedTrialCallback  # Optuna < 4.9
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.callback = callback(max_retry=max_retry)
        self.log, self.max_retry = log, max_retry

    def __call__(self, study, trial) -> None:
        if len(trial.system_attrs.get("retry_history", [])) >= self.max_retry:
            self.log(f"search: trial {trial.number} failed {self.max_retry + 1} times; "
                     "not queued again")
            return
        trial.user_attrs = {**{k: v for k, v in trial.user_attrs.items()
                               if k not in WORKER_ATTRS}, "resumes": trial.number}
        self.callback(study, trial)
        self.log(f"search: trial {trial.number} queued again with its values")


@dataclasses.dataclass
class Shared:
    """An opened shared storage and how its workers coordinate."""
    url: str  # as shown (no password)
    storage: object
    retry: Retry
    lock: object | None = None  # a journal's budget lock (JournalFileSymlinkLock)
    beats: bool = False  # trials beat themselves (journal); a database's beat is Optuna's
    heartbeat: int = HEARTBEAT
    grace: int = GRACE


def check_url(url: str) -> None:
    """Refuse a `--storage` that names no journal file and is no database URL, before any
    work; whether the database answers is seen when it is opened."""
    if url.startswith(JOURNAL):
        path = url[len(JOURNAL):]
        if not path or path.endswith(os.sep):
            raise ConfigError(f"--storage {url}: no journal file named",
                              "e.g. --storage journal:///shared/searches/ham.journal")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ConfigError(f"--storage {url}: the folder {folder} does not exist",
                              "create it on a file system every worker sees, or name another "
                              "file")
        return
    import sqlalchemy

    try:
        sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"--storage {url!r} is neither a database URL nor {JOURNAL}/path",
                          "e.g. postgresql://user@host/searches, sqlite:///search.db or "
                          "journal:///shared/search.journal") from None


def open_storage(url: str, log, heartbeat: int = HEARTBEAT, grace: int = GRACE) -> Shared:
    """The storage `--storage URL` names: journal:///file or a database URL."""
    check_url(url)
    retry = Retry(log)
    if url.startswith(JOURNAL):
        return _journal(url, retry, heartbeat, grace)
    return _database(url, retry, heartbeat, grace)


def _journal(url: str, retry: Retry, heartbeat: int, grace: int) -> Shared:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    path = url[len(JOURNAL):]
    storage = JournalStorage(JournalFileBackend(path))
    return Shared(url, storage, retry, JournalFileSymlinkLock(path + ".budget"), True,
                  heartbeat, grace)


def _database(url: str, retry: Retry, heartbeat: int, grace: int) -> Shared:
    import optuna
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    stale = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in
             inspect.signature(optuna.storages.RDBStorage).parameters else "failed_trial_callback")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat,
                                                 grace_period=grace, **{stale: retry})
    except ImportError as exc:  # Optuna re-raises the driver's ModuleNotFoundError as this
        missing = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
        if not isinstance(missing, ModuleNotFoundError):  # installed, but it does not load
            cause = missing or exc
            raise ConfigError(f"--storage {shown}: its database driver does not load "
                              f"({type(cause).__name__}: {str(cause).splitlines()[0][:200]})",
                              "reinstall it, e.g. pip install 'psycopg[binary]' for "
                              "PostgreSQL (it brings its own libpq)") from None
        name = (missing.name or "").split(".")[0]
        raise ConfigError(f"--storage {shown}: its database driver {name} is not "
                          "installed", f"pip install {DRIVERS.get(name, name)}") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise RunError(f"--storage {shown}: the database cannot be used "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                       "check that its server runs and the URL, user and database are "
                       "right") from None
    return Shared(shown, storage, retry, None, False, heartbeat, grace)


class _Gate:
    """The budget lock, held from the budget check until the trial exists (the objective's
    first line), so that two workers never both take the last trial; a no-op on a database,
    where a trial started over the budget is dropped as surplus instead."""

    def __init__(self, lock):
        self.lock, self.held = lock, False

    def acquire(self) -> None:
        if self.lock is not None:
            self.lock.acquire()
            self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()


class _Heartbeat:
    """Writes the time into a running trial's `heartbeat` attribute every `interval` seconds
    from a thread: the journal's stand-in for a database's heartbeat."""

    def __init__(self, storage, trial_id: int, interval: float, on: bool):
        self.storage, self.trial_id, self.interval, self.on = storage, trial_id, interval, on
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.on:
            self._beat()
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self):
        while not self.stop.wait(self.interval) and self._beat():
            pass

    def _beat(self) -> bool:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
        except UpdateFinishedTrialError:  # failed by another worker: its report will stop it
            return False
        return True


class _Surplus(Exception):
    """The trial found the budget taken by other workers' trials when it started."""


def _stale(trial, shared: Shared) -> str | None:
    worker = trial.user_attrs.get("worker")
    if _gone(worker):
        return f"its worker (pid {worker['pid']} on {worker['host']}) is gone"
    beat = trial.user_attrs.get("heartbeat")
    if shared.beats and isinstance(beat, (int, float)) and time.time() - beat > shared.grace:
        return f"no heartbeat for {time.time() - beat:.0f} s"
    return None


def _claim(study, trial) -> bool:
    """Fail another worker's trial; False when some other worker got there first."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:  # no public call fails another process's trial: the storage's own setter
        return bool(study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL))
    except UpdateFinishedTrialError:
        return False


def recover(study, shared: Shared, log) -> int:
    """Fail and queue again the running trials whose worker is gone (a database's heartbeat,
    a dead pid on this host, a journal heartbeat older than the grace period)."""
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental API
        optuna.storages.fail_stale_trials(study)
    queued = 0
    for trial in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
        why = _stale(trial, shared)
        if why and _claim(study, trial):
            log(f"search: trial {trial.number} failed: {why}")
            shared.retry(study, trial)
            queued += 1
    return queued


def _counts(study) -> tuple[int, int]:
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    done = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    return done, states.count(TrialState.RUNNING)


def _surplus(study, trial, budget: int | None) -> bool:
    """Finished trials and running ones numbered before it already fill the budget."""
    from optuna.trial import TrialState

    if budget is None:
        return False
    ahead = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) or
                t.state == TrialState.RUNNING and t.number < trial.number
                for t in study.get_trials(deepcopy=False))
    return ahead >= budget


def optimize(study, objective, shared: Shared, trials: int | None, timeout: float | None,
             log) -> None:
    """Run trials in this worker until `trials` have finished across all workers (then wait
    for the others' running ones) or `timeout` seconds of this worker have passed."""
    started, gate, shown = time.monotonic(), _Gate(shared.lock), False
    while True:
        gate.acquire()
        try:
            recover(study, shared, log)
            done, running = _counts(study)
            late = timeout is not None and time.monotonic() - started > timeout
            if late or trials is not None and done >= trials:
                break
            if trials is None or done + running < trials:
                _one_trial(study, objective, shared, gate, trials, log)
                continue
        finally:
            gate.release()
        if not shown:  # the rest of the budget is in others' running trials: one may yet fail
            log(f"search: {done} finished, {running} running: waiting for the other workers")
            shown = True
        time.sleep(POLL)
    if not late:
        _wait_for_others(study, shared, log)


def _one_trial(study, objective, shared: Shared, gate: _Gate, trials, log) -> None:
    from optuna.exceptions import UpdateFinishedTrialError

    def run(trial):
        gate.release()  # the trial exists: the next worker may count it
        if _surplus(study, trial, trials):
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the budget is taken by other workers")
        trial.set_user_attr("worker", this_worker())
        with _Heartbeat(study._storage, trial._trial_id, shared.heartbeat, shared.beats):
            try:
                return objective(trial)
            except KeyboardInterrupt:  # its checkpoint is saved: another worker continues it
                shared.retry(study, copy.deepcopy(study._storage.get_trial(trial._trial_id)))
                raise

    try:
        study.optimize(run, n_trials=1, catch=(_Surplus,))
    except UpdateFinishedTrialError:
        log("search: another worker failed this worker's trial (its heartbeat lapsed) and "
            "queued it again; this run of it is dropped")


def _wait_for_others(study, shared: Shared, log) -> None:
    """The budget is reached: wait until no trial runs, so every worker reports the same."""
    from optuna.trial import TrialState

    shown = False
    while True:
        recover(study, shared, log)
        running = [t.number for t in study.get_trials(deepcopy=False,
                                                      states=(TrialState.RUNNING,))]
        if not running:
            return
        if not shown:
            log(f"search: budget reached; waiting for trial(s) {running} of other workers")
            shown = True
        time.sleep(POLL)
