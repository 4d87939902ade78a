"""`brainvq tune` workers on separate processes (and run folders, as on separate machines)
sharing one study in a real PostgreSQL server, which this test starts and stops itself
(Debian's postgresql package; .ci/run installs it). Skipped, saying why, only where no server
is installed."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from .test_tune_cli import tune_args, tune_yaml

STUDY = "shared"


def _server_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own (a fresh cluster in a temporary folder, on a free port
    of 127.0.0.1), stopped and removed afterwards."""
    pytest.importorskip("psycopg2", reason="psycopg2-binary (a dev dependency) not installed")
    bindir = _server_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server installed (Debian: apt-get install postgresql)")
    as_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="brainvq-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as its own user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(data, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = lambda *cmd: subprocess.run(  # noqa: E731
        [*as_user, *map(str, cmd)], check=True, capture_output=True, timeout=120
    )
    try:
        run(bindir / "initdb", "-D", data / "db", "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(bindir / "pg_ctl", "-D", data / "db", "-o", options, "-l", data / "log", "-w", "start")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "db" / "postmaster.pid").exists():
            run(bindir / "pg_ctl", "-D", data / "db", "-m", "immediate", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_on_one_postgresql_study_make_distinct_trials(
    tmp_path: Path, postgres_url: str
) -> None:
    config = tune_yaml(tmp_path, epochs=1)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "brainvq.app.cli",
                *tune_args(tmp_path / f"machine{i}", config, 4, "--threads", "1"),
                "--storage",
                postgres_url,
                "--study",
                STUDY,
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    errors = [w.communicate(timeout=600)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [e[-2000:] for e in errors]
    study = optuna.load_study(study_name=STUDY, storage=postgres_url)
    numbers = [t.number for t in study.trials]
    assert numbers == sorted(set(numbers))  # distinct trial numbers
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4  # the total asked for, both workers together
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == len(params)  # distinct configurations
    assert {t.user_attrs["worker"]["pid"] for t in finished} == {w.pid for w in workers}
    assert all(t.user_attrs.get("surplus") for t in study.trials if t.state == TrialState.FAIL)
    for i in range(2):  # each machine's folder has the study's files, drawn from the server
        assert (tmp_path / f"machine{i}" / "tune" / "trials.csv").is_file()


def test_workers_opening_a_new_database_at_once_all_open_it(postgres_url: str) -> None:
    """Six processes open one new database's storage at the same moment: they race to create
    Optuna's tables (PostgreSQL: a duplicate type or table for the losers), and every one of
    them must end with the storage open (make_storage tries again after a jittered wait)."""
    import psycopg2

    base = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    connection = psycopg2.connect(base)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE race")
    connection.close()
    url = postgres_url.rsplit("/", 1)[0] + "/race"
    start = time.time() + 3  # every process imports first, then all open at this moment
    code = (
        "import time, sys\n"
        "from brainvq.training.study import make_storage\n"
        f"time.sleep(max(0.0, {start} - time.time()))\n"
        f"make_storage({url!r})\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(6)
    ]
    errors = [w.communicate(timeout=120)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0] * 6, [e[-1500:] for e in errors if e]
