from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def optim_home(tmp_path_factory):
    """Every test session gets its own OPTIM_HOME (artifacts) and SQLite run store."""
    home = tmp_path_factory.mktemp("optim-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTIM_HOME", str(home))
        mp.delenv("OPTIM_DB_URL", raising=False)
        yield home


@pytest.fixture
def fresh_store(tmp_path, monkeypatch):
    """A store of its own for tests that count runs."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("OPTIM_DB_URL", url)
    from optim.store import Store

    return Store(url)


# the longest files first (minutes each on 2 cores): with files dealt to two workers in
# collection order (scripts/test.sh), the suite then ends on short files, not on one long one
LONGEST_FIRST = ("test_e2e.py", "test_corpus.py", "test_links_browser.py", "test_upload_browser.py",
                 "test_app.py", "test_store.py", "test_faults.py", "test_ray.py")  # fmt: skip


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep order


def pytest_report_header(config):
    return f"OPTIM test artifacts under a temporary OPTIM_HOME; cores={os.cpu_count()}"


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium for one browser test module (tests/browser.py)."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (tests/pg.py); fails, never skips, without
    the binaries (scripts/test.sh installs them)."""
    from tests.pg import PostgresServer

    try:
        server = PostgresServer().start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()
